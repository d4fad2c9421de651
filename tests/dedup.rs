//! De-duplication through the middleware: duplicates answered without the handler, failures,
//! cancellations and panics releasing their claim, concurrent copies held off, pass-through
//! marking, a store that cannot answer, the replay window, and a pluggable async store.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use common::{KEY, PATH, Stack, client, send, serve, signed, try_send, within};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use periskope_webhook::dedup::{
    Claim, Dedup, DedupKey, DedupOutcome, DedupStore, EventKeys, Lease, MemoryStore, StoreError,
};
use periskope_webhook::{
    DeliveryMetadata, DuplicateDelivery, EventKind, KindSet, PeriskopeWebhookLayer, Rejection, testing,
};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt, service_fn};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn store() -> MemoryStore {
    MemoryStore::new(1000, Duration::from_secs(60))
}

fn message_body(message_id: &str, org_phone: &str) -> String {
    format!(
        r#"{{"event":"message.created","data":{{"message_id":"{message_id}","org_phone":"{org_phone}","body":"hi"}},"org_id":"o"}}"#
    )
}

fn delivery(message_id: &str, org_phone: &str) -> Request<Full<Bytes>> {
    testing::signed_request_for_body(KEY, PATH, message_body(message_id, org_phone))
}

/// What the handler does on one call.
#[derive(Clone)]
enum Act {
    Answer(StatusCode),
    /// Never completes.
    Hang,
    Panic,
    /// Waits for the notification, then answers.
    WaitThen(Arc<Notify>, StatusCode),
}

/// A handler that acts per call as `script` says (by call number, from 0), counting its calls
/// and recording the metadata it saw.
#[derive(Clone)]
struct Handler {
    script: Arc<dyn Fn(usize) -> Act + Send + Sync>,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<DeliveryMetadata>>>,
}

impl Handler {
    fn new(script: impl Fn(usize) -> Act + Send + Sync + 'static) -> Self {
        Handler { script: Arc::new(script), calls: Arc::default(), seen: Arc::default() }
    }

    fn answering(status: StatusCode) -> Self {
        Handler::new(move |_| Act::Answer(status))
    }

    async fn handle(self, metadata: Option<DeliveryMetadata>) -> StatusCode {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(metadata.expect("metadata"));
        match (self.script)(call) {
            Act::Answer(status) => status,
            Act::Hang => std::future::pending().await,
            Act::Panic => panic!("the handler panics on call {call}"),
            Act::WaitThen(notify, status) => {
                notify.notified().await;
                status
            }
        }
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + use<>,
    > + Clone
    + Send
    + use<> {
        let handler = self.clone();
        service_fn(move |request: Request<Full<Bytes>>| {
            let handler = handler.clone();
            async move {
                let status = handler.handle(request.extensions().get::<DeliveryMetadata>().cloned()).await;
                let mut response = Response::new(Full::from(r#"{"code":"handled"}"#));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        })
    }

    /// `POST PATH` served by this handler behind `layer`.
    fn router<D>(&self, layer: PeriskopeWebhookLayer<D>) -> Router
    where
        D: periskope_webhook::dedup::DedupPolicy + Send + Sync + 'static,
        D::ClaimFuture: Send,
        D::Lease: Send,
        <D::Lease as Lease>::SettleFuture: Send,
    {
        let handler = self.clone();
        Router::new()
            .route(
                PATH,
                post(move |request: axum::extract::Request| {
                    let handler = handler.clone();
                    async move {
                        let status =
                            handler.handle(request.extensions().get::<DeliveryMetadata>().cloned()).await;
                        (status, r#"{"code":"handled"}"#)
                    }
                }),
            )
            .layer(layer)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn outcomes(&self) -> Vec<DedupOutcome> {
        self.seen.lock().unwrap().iter().map(|metadata| metadata.dedup).collect()
    }

    async fn wait_for_calls(&self, calls: usize) {
        within("the handler is called", async {
            while self.calls() < calls {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
    }
}

async fn code_of<B: http_body::Body<Data = Bytes, Error: std::fmt::Debug>>(response: Response<B>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    json["code"].as_str().unwrap_or("").to_owned()
}

fn deduplicating(store: MemoryStore) -> PeriskopeWebhookLayer<Dedup<MemoryStore>> {
    PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store))
}

#[tokio::test]
async fn a_repeated_delivery_is_answered_without_the_handler() {
    let handler = Handler::answering(StatusCode::OK);
    let service = deduplicating(store()).layer(handler.service());

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
    assert_eq!(handler.outcomes(), [DedupOutcome::New, DedupOutcome::New]);
}

#[tokio::test]
async fn without_a_policy_the_outcome_is_off() {
    let handler = Handler::answering(StatusCode::OK);
    let service = PeriskopeWebhookLayer::new(KEY).layer(handler.service());
    for _ in 0..2 {
        service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap();
    }
    assert_eq!(handler.outcomes(), [DedupOutcome::Off, DedupOutcome::Off]);
}

#[tokio::test]
async fn one_copy_per_group_message_unless_keys_are_per_phone() {
    let handler = Handler::answering(StatusCode::OK);
    let service = deduplicating(store()).layer(handler.service());
    for phone in ["a@c.us", "b@c.us", "c@c.us"] {
        assert_eq!(service.clone().oneshot(delivery("g1", phone)).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(handler.calls(), 1, "one copy of a message delivered through three org phones");

    let handler = Handler::answering(StatusCode::OK);
    let per_phone = Dedup::new(store()).keys(EventKeys::per_phone());
    let service = PeriskopeWebhookLayer::new(KEY).deduplicate(per_phone).layer(handler.service());
    for phone in ["a@c.us", "b@c.us", "a@c.us"] {
        service.clone().oneshot(delivery("g1", phone)).await.unwrap();
    }
    assert_eq!(handler.calls(), 2, "one copy per org phone");
}

#[tokio::test]
async fn a_failed_delivery_is_handled_again_when_retried() {
    let handler = Handler::new(|call| {
        Act::Answer(if call == 0 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK })
    });
    let store = store();
    let service = deduplicating(store.clone()).layer(handler.service());
    let failed = service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(store.is_empty(), "the claim was released");

    assert_eq!(service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(handler.calls(), 2, "the retry reached the handler");
    assert_eq!(code_of(service.oneshot(delivery("m1", "a@c.us")).await.unwrap()).await, "duplicate");
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn pass_through_forwards_duplicates_marked() {
    let release = Arc::new(Notify::new());
    let handler = {
        let release = release.clone();
        Handler::new(move |call| match call {
            0 => Act::WaitThen(release.clone(), StatusCode::OK),
            _ => Act::Answer(StatusCode::OK),
        })
    };
    let policy = Dedup::new(store()).pass_through(true);
    let service = PeriskopeWebhookLayer::new(KEY).deduplicate(policy).layer(handler.service());
    let first = tokio::spawn(service.clone().oneshot(delivery("m1", "a@c.us")));
    handler.wait_for_calls(1).await;
    assert_eq!(service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(service.oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(handler.outcomes(), [DedupOutcome::New, DedupOutcome::InFlight, DedupOutcome::Duplicate]);
}

#[tokio::test]
async fn a_copy_arriving_while_the_first_is_handled_gets_409_over_http() {
    let release = Arc::new(Notify::new());
    let handler = {
        let release = release.clone();
        Handler::new(move |_| Act::WaitThen(release.clone(), StatusCode::OK))
    };
    let server = serve(Stack::Axum, handler.router(deduplicating(store()))).await;
    let body = message_body("m1", "a@c.us");

    let first = tokio::spawn({
        let (url, body) = (server.url.clone(), body.clone());
        async move { send(&client(), signed(&url, KEY, body)).await }
    });
    handler.wait_for_calls(1).await;
    send(&client(), signed(&server.url, KEY, body.clone()))
        .await
        .assert(StatusCode::CONFLICT, "duplicate_in_flight");

    release.notify_one();
    within("the first delivery", first).await.unwrap().assert(StatusCode::OK, "handled");
    send(&client(), signed(&server.url, KEY, body)).await.assert(StatusCode::OK, "duplicate");
    assert_eq!(handler.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Defect 1: a cancelled or crashed attempt must not block its retries.

/// Retries `attempt` every 200 ms (at most 10 times) until it answers `200`; returns how many
/// attempts it took.
async fn retry_until_ok<F, Fut>(mut attempt: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<StatusCode>>,
{
    for round in 1..=10 {
        if attempt().await == Some(StatusCode::OK) {
            return round;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the delivery was never handled");
}

#[tokio::test]
async fn a_timeout_in_front_of_the_layer_releases_the_claim() {
    let handler = Handler::new(|call| if call == 0 { Act::Hang } else { Act::Answer(StatusCode::OK) });
    let store = MemoryStore::new(1000, DAY);
    let service = tower::timeout::Timeout::new(
        deduplicating(store.clone()).layer(handler.service()),
        Duration::from_millis(100),
    );

    let attempts = retry_until_ok(|| {
        let service = service.clone();
        async move { service.oneshot(delivery("m1", "a@c.us")).await.ok().map(|response| response.status()) }
    })
    .await;
    assert_eq!(attempts, 2, "the first attempt timed out; the first retry was handled");
    assert_eq!(handler.calls(), 2);
    assert_eq!(code_of(service.oneshot(delivery("m1", "a@c.us")).await.unwrap()).await, "duplicate");
}

#[tokio::test]
async fn a_request_timeout_over_http_releases_the_claim() {
    let handler = Handler::new(|call| if call == 0 { Act::Hang } else { Act::Answer(StatusCode::OK) });
    let app = handler.router(deduplicating(MemoryStore::new(1000, DAY))).layer(
        tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(100),
        ),
    );
    let server = serve(Stack::Axum, app).await;
    let body = message_body("m1", "a@c.us");

    let first = send(&client(), signed(&server.url, KEY, body.clone())).await;
    assert_eq!(first.status, StatusCode::REQUEST_TIMEOUT);
    send(&client(), signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "handled");
    send(&client(), signed(&server.url, KEY, body)).await.assert(StatusCode::OK, "duplicate");
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn a_handler_panicking_inside_a_spawned_task_releases_the_claim() {
    let handler = Handler::new(|call| if call == 0 { Act::Panic } else { Act::Answer(StatusCode::OK) });
    let service = deduplicating(MemoryStore::new(1000, DAY)).layer(handler.service());

    let crashed = tokio::spawn(service.clone().oneshot(delivery("m1", "a@c.us"))).await;
    assert!(crashed.is_err_and(|error| error.is_panic()));
    let retried = tokio::spawn(service.clone().oneshot(delivery("m1", "a@c.us"))).await.unwrap().unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn a_handler_panicking_behind_a_real_server_releases_the_claim() {
    let handler = Handler::new(|call| if call == 0 { Act::Panic } else { Act::Answer(StatusCode::OK) });
    let server = serve(Stack::Axum, handler.router(deduplicating(MemoryStore::new(1000, DAY)))).await;
    let body = message_body("m1", "a@c.us");
    // The panic unwinds the connection's task: the client sees the connection end.
    assert!(try_send(&client(), signed(&server.url, KEY, body.clone())).await.is_err());
    send(&client(), signed(&server.url, KEY, body)).await.assert(StatusCode::OK, "handled");
    assert_eq!(handler.calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// Defect 2: distinct occurrences are handled, each once.

#[tokio::test]
async fn distinct_occurrences_of_one_message_or_reaction_are_each_handled() {
    let handler = Handler::answering(StatusCode::OK);
    let service = deduplicating(store()).layer(handler.service());
    let flag = |event: &str, field: &str, at: &str| {
        format!(
            r#"{{"event":"{event}","data":{{"message_id":"m1","{field}":"2024-05-13T{at}Z","flag_metadata":{{"flagged_at":"2024-05-13T{at}Z"}}}}}}"#
        )
    };
    let reaction = |id: &str, emoji: &str, at: &str| {
        format!(
            r#"{{"event":"reaction.updated","data":{{"reaction_id":"{id}","reaction":"{emoji}","timestamp":"2024-05-13T{at}Z"}}}}"#
        )
    };
    let occurrences = [
        flag("message.flagged", "flagged", "11:00:00"),
        flag("message.unflagged", "updated_at", "11:00:05"),
        flag("message.flagged", "flagged", "11:00:09"),
        reaction("r1", "👍", "11:00:00"),
        reaction("r1", "❤️", "11:00:05"),
        reaction("r1", "👍", "11:00:09"),
        reaction("r1", "❤️", "11:00:12"),
        reaction("r|x", "y", "11:00:00"),
        reaction("r", "x|y", "11:00:00"),
    ];
    // Each is handled the first time, and still recognised when it comes again.
    for expected in ["handled", "duplicate"] {
        for body in &occurrences {
            let response = service
                .clone()
                .oneshot(testing::signed_request_for_body::<Full<Bytes>>(KEY, PATH, body.clone()))
                .await
                .unwrap();
            assert_eq!(code_of(response).await, expected, "{body}");
        }
        assert_eq!(handler.calls(), occurrences.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Defect 4: only the claimant settles its claim.

#[tokio::test]
async fn a_late_failure_of_an_evicted_claim_leaves_the_new_claim_alone() {
    let (late, current) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let handler = {
        let (late, current) = (late.clone(), current.clone());
        Handler::new(move |call| match call {
            0 => Act::WaitThen(late.clone(), StatusCode::INTERNAL_SERVER_ERROR),
            1 => Act::Answer(StatusCode::OK),
            2 => Act::WaitThen(current.clone(), StatusCode::OK),
            _ => Act::Answer(StatusCode::OK),
        })
    };
    // Capacity 1: the claim on m1 is evicted by m2, and a second copy of m1 takes over.
    let service = deduplicating(MemoryStore::new(1, DAY)).layer(handler.service());
    let first = tokio::spawn(service.clone().oneshot(delivery("m1", "a@c.us")));
    handler.wait_for_calls(1).await;
    assert_eq!(service.clone().oneshot(delivery("m2", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    let second = tokio::spawn(service.clone().oneshot(delivery("m1", "a@c.us")));
    handler.wait_for_calls(3).await;

    late.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::INTERNAL_SERVER_ERROR);
    let third = service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap();
    assert_eq!(third.status(), StatusCode::CONFLICT, "the second copy still holds its claim");
    assert_eq!(handler.calls(), 3);

    current.notify_one();
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(code_of(service.oneshot(delivery("m1", "a@c.us")).await.unwrap()).await, "duplicate");
}

// ---------------------------------------------------------------------------------------------
// Defect 5: a TTL beyond the clock.

#[tokio::test]
async fn a_store_that_never_forgets_works() {
    let handler = Handler::answering(StatusCode::OK);
    let service = deduplicating(MemoryStore::new(1000, Duration::MAX)).layer(handler.service());
    assert_eq!(service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(code_of(service.oneshot(delivery("m1", "a@c.us")).await.unwrap()).await, "duplicate");
    assert_eq!(handler.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// Defects 6 and 7: strict mode after the filter, no phone number in a rejection.

const MISFIT_CHAT: &str =
    r#"{"event":"chat.created","data":{"chat_id":"c1","members":{"919999912345@c.us":{"is_admin":"yes"}}}}"#;

#[tokio::test]
async fn strict_mode_ignores_a_filtered_out_kind_whose_data_does_not_fit() {
    let handler = Handler::answering(StatusCode::OK);
    let layer = PeriskopeWebhookLayer::new(KEY)
        .strict(true)
        .filter_events(KindSet::empty().with(EventKind::MessageCreated));
    let response = layer
        .layer(handler.service())
        .oneshot(testing::signed_request_for_body::<Full<Bytes>>(KEY, PATH, MISFIT_CHAT))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(code_of(response).await, "event_ignored");
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn a_strict_rejection_names_no_phone_number() {
    let handler = Handler::answering(StatusCode::OK);
    let service = PeriskopeWebhookLayer::new(KEY).strict(true).layer(handler.service());
    let response = service
        .oneshot(testing::signed_request_for_body::<Full<Bytes>>(KEY, PATH, MISFIT_CHAT))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let rejection = response.extensions().get::<Rejection>().cloned().expect("a rejection");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("data.members.*.is_admin"), "{body}");
    for text in [body.to_string(), rejection.to_string(), format!("{rejection:?}")] {
        assert!(!text.contains("9999912345"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// A store that cannot answer.

#[derive(Clone)]
struct DownStore;

impl DedupStore for DownStore {
    type Lease = periskope_webhook::dedup::MemoryLease;
    type ClaimFuture = std::future::Ready<Result<Claim<Self::Lease>, StoreError>>;

    fn claim(&self, _key: &DedupKey) -> Self::ClaimFuture {
        std::future::ready(Err(StoreError::timed_out()))
    }
}

#[tokio::test]
async fn a_store_that_cannot_answer_hands_the_delivery_on_marked() {
    let handler = Handler::answering(StatusCode::OK);
    let service = PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(DownStore)).layer(handler.service());
    for _ in 0..2 {
        assert_eq!(service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(handler.outcomes(), [DedupOutcome::StoreUnavailable, DedupOutcome::StoreUnavailable]);
}

#[tokio::test]
async fn a_store_that_cannot_answer_gets_503_when_asked() {
    let handler = Handler::answering(StatusCode::OK);
    let policy = Dedup::new(DownStore).reject_when_unavailable(true);
    let response = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(policy)
        .layer(handler.service())
        .oneshot(delivery("m1", "a@c.us"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code_of(response).await, "dedup_unavailable");
    assert_eq!(handler.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// The replay window.

fn stamped(seconds_ago: i64) -> Request<Full<Bytes>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let body = format!(
        r#"{{"event":"message.created","data":{{"message_id":"m-{seconds_ago}"}},"timestamp":{}}}"#,
        now - seconds_ago * 1000
    );
    testing::signed_request_for_body(KEY, PATH, body)
}

#[tokio::test]
async fn the_replay_window_refuses_old_future_and_unstamped_deliveries() {
    let handler = Handler::answering(StatusCode::OK);
    let store = store();
    let layer =
        deduplicating(store.clone()).max_age(Duration::from_secs(300)).filter_events(KindSet::empty());
    let service = layer.layer(handler.service());
    let answer = |request| {
        let service = service.clone();
        async move {
            let response = service.oneshot(request).await.unwrap();
            (response.status(), code_of(response).await)
        }
    };
    assert_eq!(answer(stamped(301)).await, (StatusCode::BAD_REQUEST, "stale_delivery".to_owned()));
    assert_eq!(answer(stamped(-120)).await, (StatusCode::BAD_REQUEST, "stale_delivery".to_owned()));
    let unstamped = delivery("m1", "a@c.us");
    assert_eq!(answer(unstamped).await, (StatusCode::BAD_REQUEST, "missing_timestamp".to_owned()));
    let unreadable = testing::signed_request_for_body(
        KEY,
        PATH,
        r#"{"event":"message.created","data":{},"timestamp":"yesterday"}"#,
    );
    assert_eq!(answer(unreadable).await, (StatusCode::BAD_REQUEST, "missing_timestamp".to_owned()));
    // Fresh ones pass the window, then meet the filter (which refuses everything here).
    assert_eq!(answer(stamped(10)).await, (StatusCode::OK, "event_ignored".to_owned()));
    assert_eq!(answer(stamped(-30)).await, (StatusCode::OK, "event_ignored".to_owned()));
    assert!(store.is_empty(), "the window runs before de-duplication");
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn without_a_window_old_deliveries_are_handled() {
    let handler = Handler::answering(StatusCode::OK);
    let service = PeriskopeWebhookLayer::new(KEY).layer(handler.service());
    assert_eq!(
        service.clone().oneshot(stamped(10 * 365 * 24 * 3600)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(service.oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(handler.calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// A custom store.

/// A store that answers asynchronously, as one over the network would, and records its calls.
#[derive(Clone, Default)]
struct SlowStore {
    log: Arc<Mutex<Vec<String>>>,
    delivered: Arc<Mutex<std::collections::HashSet<DedupKey>>>,
}

struct SlowLease {
    store: SlowStore,
    key: DedupKey,
}

impl Lease for SlowLease {
    type SettleFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

    fn settle(self, delivered: bool) -> Self::SettleFuture {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.store.log.lock().unwrap().push(format!("settle {delivered}"));
            if delivered {
                self.store.delivered.lock().unwrap().insert(self.key);
            }
            Ok(())
        })
    }
}

impl DedupStore for SlowStore {
    type Lease = SlowLease;
    type ClaimFuture = Pin<Box<dyn Future<Output = Result<Claim<SlowLease>, StoreError>> + Send>>;

    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture {
        let (store, key) = (self.clone(), key.clone());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            store.log.lock().unwrap().push("claim".to_owned());
            if store.delivered.lock().unwrap().contains(&key) {
                Ok(Claim::Delivered)
            } else {
                Ok(Claim::New(SlowLease { store, key }))
            }
        })
    }
}

#[tokio::test]
async fn a_custom_asynchronous_store_plugs_in() {
    let handler = Handler::answering(StatusCode::OK);
    let store = SlowStore::default();
    let service =
        PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store.clone())).layer(handler.service());
    assert_eq!(service.clone().oneshot(delivery("m9", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    let second = service.oneshot(delivery("m9", "a@c.us")).await.unwrap();
    assert_eq!(code_of(second).await, "duplicate");
    assert_eq!(handler.calls(), 1);
    assert_eq!(*store.log.lock().unwrap(), ["claim", "settle true", "claim"]);
}

#[tokio::test]
async fn rejections_do_not_touch_the_store() {
    let handler = Handler::answering(StatusCode::OK);
    let store = store();
    let service = deduplicating(store.clone()).layer(handler.service());
    let mut forged = delivery("m1", "a@c.us");
    forged.headers_mut().insert("x-periskope-signature", "0".repeat(64).parse().unwrap());
    let response = service.oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.extensions().get::<Rejection>().is_some());
    assert!(store.is_empty());
    assert_eq!(handler.calls(), 0);
}
