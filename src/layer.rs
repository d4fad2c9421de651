//! [`PeriskopeWebhookLayer`]: bound the body, verify the signature, decode the event, and hand
//! the request on with the event in its extensions.
//!
//! ```
//! use axum::{Extension, Router, routing::post};
//! use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
//!
//! async fn webhook(Extension(event): Extension<WebhookEvent>) -> &'static str {
//!     println!("{} for org {:?}", event.name(), event.event().org_id);
//!     "ok"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/webhooks/periskope", post(webhook))
//!     .layer(PeriskopeWebhookLayer::new("peri_ea194594-c433-4ea7-8c94-af9e63c5df47"));
//! ```
//!
//! Requests that fail a step never reach the handler; they are answered with the
//! [`Rejection`]'s status and a small JSON body such as
//! `{"code":"signature_mismatch","message":"..."}`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Buf;
use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::combinators::{Collect, UnsyncBoxBody};
use http_body_util::{BodyExt, Collected, Full, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::dedup::{Claim, DedupOutcome, DedupPolicy, Lease, NoDedup};
use crate::drift::Drift;
use crate::event::{EventData, EventKind, WebhookEvent};
use crate::filter::{EventFilter, KindSet};
use crate::metadata::{DeliveryMetadata, RawBody};
use crate::metrics::{self, Outcome, Stopwatch};
use crate::rejection::{OnRejection, Rejection};
use crate::response::{BoxError, ResponseBody, json_answer};
use crate::signature::{EmptyKey, IntoSigningKey, SigningKeys};

/// The default body limit: 25 MiB.
///
/// A private note can carry its attachment inline as base64 (`media.filedata`); WhatsApp caps
/// media at 16 MB, which base64 turns into about 21.4 MB, plus the envelope. Group chats are
/// far smaller (a 1,500-member `chat.created` is about 650 KB). Memory use peaks at about this
/// limit times the number of requests in flight, so lower it if you do not receive notes with
/// attachments.
pub const DEFAULT_BODY_LIMIT: usize = 25 * 1024 * 1024;

#[derive(Clone)]
enum Verification {
    Keys(SigningKeys),
    Disabled,
}

/// Everything a request needs, shared by every clone of the layer and its services. The
/// rejection and filter policies are called through a pointer: one dynamic call next to an
/// HMAC and a decode costs nothing measurable (see `benches/layer.rs`), and keeps their types
/// out of the layer's.
#[derive(Clone)]
struct Config {
    verification: Verification,
    limit: usize,
    strict: bool,
    drift: bool,
    max_age: Option<Duration>,
    /// `None`: [`Rejection::to_json_response`].
    on_rejection: Option<Arc<dyn OnRejection>>,
    filter: Arc<dyn EventFilter>,
    #[cfg(feature = "tracing")]
    rejection_log_level: tracing::Level,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Config");
        match &self.verification {
            Verification::Keys(keys) => debug.field("keys", keys),
            Verification::Disabled => debug.field("keys", &"VERIFICATION DISABLED"),
        };
        debug
            .field("limit", &self.limit)
            .field("strict", &self.strict)
            .field("drift", &self.drift)
            .field("max_age", &self.max_age)
            .field("custom_rejections", &self.on_rejection.is_some())
            .finish_non_exhaustive()
    }
}

/// A [`Layer`] that turns a route into a Periskope webhook endpoint.
///
/// For each request, in order:
/// 1. only `POST` passes (405 with `Allow: POST` otherwise);
/// 2. the body is read up to the [limit](Self::body_limit): a larger `Content-Length` gets 413
///    before a byte is read, a longer body 413 when the limit is crossed, a failing body 400;
/// 3. the `x-periskope-signature` HMAC-SHA256 is checked in constant time against each key
///    (401 when missing, malformed, mismatched, or given twice differently);
/// 4. the verified body, and only a verified one, is decoded (400 when it is not a delivery);
/// 5. with a [replay window](Self::max_age), a delivery whose timestamp is outside it gets 400;
/// 6. events refused by the [filter](Self::filter_events) are answered `200 OK` (their `data`
///    is not typed, but the body is checked as in step 4);
/// 7. a known event whose data does not fit is forwarded as [`EventData::Undecodable`], or
///    rejected with 422 in [strict](Self::strict) mode;
/// 8. with [de-duplication](Self::deduplicate), a copy already handled is answered `200` and
///    one being handled `409`;
/// 9. the inner service gets the request with a body replaying the same bytes, and
///    [`WebhookEvent`], [`RawBody`] and [`DeliveryMetadata`] in its extensions.
///
/// Rejections are responses, not errors: the service's error type is the inner service's.
///
/// With the `tracing` feature each request runs in a `periskope.delivery` span (the inner
/// service inside it) with the fields `event_kind`, `key_index` (of the key that verified it),
/// `body_bytes`, `status` and, when the layer answered itself, `code` (the rejection's code,
/// `ignored` or `duplicate`); never an id, a phone number or a body. Its parent is the span
/// current when the layer is called: an app that extracts the request's `traceparent` and makes
/// it current (see `examples/otel.rs`) makes the delivery that request's child.
///
/// ```
/// use axum::{Router, body::Body, routing::post};
/// use http::{Request, StatusCode};
/// use periskope_webhook::{PeriskopeWebhookLayer, Rejection};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app: Router = Router::new()
///     .route("/webhooks/periskope", post(|| async { "handled" }))
///     .layer(PeriskopeWebhookLayer::new("peri_demo-key").body_limit(1024 * 1024));
///
/// // No signature: answered 401 by the layer; the handler never runs.
/// let unsigned = Request::post("/webhooks/periskope").body(Body::from(r#"{"event":"note.created"}"#)).unwrap();
/// let response = app.oneshot(unsigned).await.unwrap();
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.extensions().get::<Rejection>().map(Rejection::code), Some("signature_missing"));
/// # }
/// ```
///
/// # Naming a configured layer
/// The layer's type changes only with its de-duplication policy (`D`), so a function can
/// return a configured layer:
///
/// ```
/// use std::time::Duration;
/// use periskope_webhook::{Dedup, EventKind, KindSet, MemoryStore, PeriskopeWebhookLayer};
///
/// fn webhook_layer(key: &str) -> PeriskopeWebhookLayer<Dedup<MemoryStore>> {
///     PeriskopeWebhookLayer::new(key)
///         .filter_events(KindSet::empty().with(EventKind::MessageCreated))
///         .deduplicate(Dedup::new(MemoryStore::new(10_000, Duration::from_secs(3600))))
/// }
///
/// fn plain_layer(key: &str) -> PeriskopeWebhookLayer {
///     PeriskopeWebhookLayer::new(key).strict(true)
/// }
/// # let _ = (webhook_layer("peri_demo"), plain_layer("peri_demo"));
/// ```
#[derive(Clone, Debug)]
pub struct PeriskopeWebhookLayer<D = NoDedup> {
    config: Arc<Config>,
    dedup: D,
}

impl PeriskopeWebhookLayer {
    /// A layer verifying with `key`, the signing key exactly as Periskope's console shows it
    /// (`&str`, `String`, or a [`SigningKey`](crate::SigningKey)).
    ///
    /// # Panics
    ///
    /// If `key` is empty (an unset variable, most likely): an empty key would let anyone sign.
    /// [`PeriskopeWebhookLayer::try_new`] returns the error instead.
    pub fn new(key: impl IntoSigningKey) -> Self {
        Self::try_new(key).expect("the Periskope signing key must not be empty")
    }

    /// A layer verifying with `key`, or [`EmptyKey`] when it is empty.
    pub fn try_new(key: impl IntoSigningKey) -> Result<Self, EmptyKey> {
        SigningKeys::new(key).map(Self::with_keys)
    }

    /// A layer accepting a signature by any of `keys` (key rotation).
    pub fn with_keys(keys: SigningKeys) -> Self {
        Self::from_verification(Verification::Keys(keys))
    }

    /// A layer that does NOT verify signatures: anyone can forge events.
    ///
    /// Only for local experiments, or when Periskope has no signing key configured and the
    /// endpoint is protected some other way. [`DeliveryMetadata::key`] is `None` then.
    pub fn insecure_without_verification() -> Self {
        Self::from_verification(Verification::Disabled)
    }

    fn from_verification(verification: Verification) -> Self {
        PeriskopeWebhookLayer {
            config: Arc::new(Config {
                verification,
                limit: DEFAULT_BODY_LIMIT,
                strict: false,
                drift: false,
                max_age: None,
                on_rejection: None,
                filter: Arc::new(KindSet::all()),
                #[cfg(feature = "tracing")]
                rejection_log_level: tracing::Level::DEBUG,
            }),
            dedup: NoDedup,
        }
    }
}

impl<D> PeriskopeWebhookLayer<D> {
    /// Sets the body limit in bytes (default [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, limit: usize) -> Self {
        Arc::make_mut(&mut self.config).limit = limit;
        self
    }

    /// In strict mode, a known event whose `data` does not fit its type is rejected with 422
    /// instead of being forwarded as [`EventData::Undecodable`] (the default: nothing lost).
    pub fn strict(mut self, strict: bool) -> Self {
        Arc::make_mut(&mut self.config).strict = strict;
        self
    }

    /// Refuses deliveries whose envelope `timestamp` is older than `max_age`, or more than a
    /// minute in the future, with 400 `stale_delivery`; a missing or unreadable timestamp gets
    /// 400 `missing_timestamp` (the window is a security measure, so it fails closed). Off by
    /// default.
    ///
    /// It limits how long a captured delivery can be replayed (the signature has no nonce),
    /// checked after the signature and before the filter and de-duplication. Periskope's retry
    /// schedule is undocumented: a retry arriving after the window is refused too, and 400 is
    /// presumably not retried, so choose a window longer than any retry you want handled.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        Arc::make_mut(&mut self.config).max_age = Some(max_age);
        self
    }

    /// Reports schema drift: fields and enumeration values the typed model does not know, in
    /// [`DeliveryMetadata::drift`] and, with the `tracing` feature, as a `debug` event (paths
    /// and enumeration values only). It costs about one more decode per delivery when on, and
    /// nothing when off (the default).
    pub fn report_drift(mut self, report: bool) -> Self {
        Arc::make_mut(&mut self.config).drift = report;
        self
    }

    /// Replaces how rejections are answered (default: [`Rejection::to_json_response`]): see
    /// [`OnRejection`] for what the closure may return.
    pub fn on_rejection(mut self, on_rejection: impl OnRejection) -> Self {
        Arc::make_mut(&mut self.config).on_rejection = Some(Arc::new(on_rejection));
        self
    }

    /// Lets only events accepted by `filter` (a [`KindSet`] or a closure
    /// `Fn(EventKind) -> bool`) reach the inner service; the others are answered `200 OK` so
    /// that Periskope does not retry them. Default: every kind, unknown included.
    pub fn filter_events(mut self, filter: impl EventFilter) -> Self {
        Arc::make_mut(&mut self.config).filter = Arc::new(filter);
        self
    }

    /// Sets the level rejections are logged at (feature `tracing`; default `DEBUG`).
    ///
    /// Anyone can send a forged request, so rejections stay below `INFO` unless you ask:
    /// otherwise the sender of forged requests would set the log volume.
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    pub fn rejection_log_level(mut self, level: tracing::Level) -> Self {
        Arc::make_mut(&mut self.config).rejection_log_level = level;
        self
    }

    /// De-duplicates deliveries with `dedup` (see [`crate::dedup`]): a delivery already handled
    /// is answered `200` without the handler, one still being handled `409`. Default: none.
    pub fn deduplicate<D2: DedupPolicy>(self, dedup: D2) -> PeriskopeWebhookLayer<D2> {
        PeriskopeWebhookLayer { config: self.config, dedup }
    }
}

impl<D: Clone> PeriskopeWebhookLayer<D> {
    /// Wraps `inner` (a handler, an [`EventRouter`](crate::EventRouter), an inbox acceptor):
    /// what [`Layer::layer`] does, without importing the trait.
    ///
    /// ```
    /// use periskope_webhook::{EventRouter, PeriskopeWebhookLayer};
    ///
    /// let service = PeriskopeWebhookLayer::new("peri_demo").service(EventRouter::new());
    /// let app: axum::Router = axum::Router::new().route_service("/webhooks/periskope", service);
    /// ```
    pub fn service<S>(&self, inner: S) -> PeriskopeWebhook<S, D> {
        PeriskopeWebhook { inner, config: Arc::clone(&self.config), dedup: self.dedup.clone() }
    }
}

impl<S, D: Clone> Layer<S> for PeriskopeWebhookLayer<D> {
    type Service = PeriskopeWebhook<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        self.service(inner)
    }
}

/// The middleware built by [`PeriskopeWebhookLayer`].
#[derive(Clone, Debug)]
pub struct PeriskopeWebhook<S, D = NoDedup> {
    inner: S,
    config: Arc<Config>,
    dedup: D,
}

impl<S, D> PeriskopeWebhook<S, D> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, D, ReqBody, ResBody> Service<Request<ReqBody>> for PeriskopeWebhook<S, D>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone,
    D: DedupPolicy,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, D>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if let Some(rejection) = reject_before_reading(&request, self.config.limit) {
            return ResponseFuture {
                state: State::Respond { response: Some(respond(&self.config, rejection, request.version())) },
                pending: None,
                clock: Stopwatch::start(),
                span: DeliverySpan::open(),
            };
        }
        let (parts, body) = request.into_parts();
        // The service that was driven to readiness is the one to call; a fresh clone stays here.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Collecting { collect: Limited::new(body, self.config.limit).collect() },
            pending: Some(Pending {
                inner: Some(inner),
                parts: Some(parts),
                config: Arc::clone(&self.config),
                dedup: self.dedup.clone(),
            }),
            clock: Stopwatch::start(),
            span: DeliverySpan::open(),
        }
    }
}

fn reject_before_reading<B: Body>(request: &Request<B>, limit: usize) -> Option<Rejection> {
    if request.method() != Method::POST {
        return Some(Rejection::MethodNotAllowed);
    }
    // A body that promises more than the limit (`Limited` would only find out while reading).
    let promised = request.body().size_hint().lower();
    let declared = request.headers().get(CONTENT_LENGTH).and_then(declared_length).unwrap_or(0);
    (promised.max(declared) > limit as u64).then_some(Rejection::PayloadTooLarge { limit })
}

/// The length a `Content-Length` value declares; a numeral too large for `u64` is still a
/// length (RFC 9110 §8.6), and larger than any limit. A value that is not a numeral declares
/// nothing: the limit is then enforced while reading.
fn declared_length(value: &HeaderValue) -> Option<u64> {
    let digits = value.to_str().ok()?.trim();
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// What the future needs once the body is in; each part is taken when its step comes.
struct Pending<S, D> {
    inner: Option<S>,
    parts: Option<Parts>,
    config: Arc<Config>,
    dedup: D,
}

impl<S, D> Pending<S, D> {
    fn call(&mut self, request: Request<Full<Bytes>>) -> (S::Future, metrics::Forwarded)
    where
        S: Service<Request<Full<Bytes>>>,
    {
        let forwarded = metrics::Forwarded::new(&request);
        (self.inner.take().expect("the inner service is called once").call(request), forwarded)
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, Out, Col, C, L, St> {
        Collecting { #[pin] collect: Col },
        Claiming { #[pin] claim: C, request: Option<Request<Full<Bytes>>> },
        // The lease lives here while the handler runs: dropping the future (cancellation) or
        // unwinding through it (a panicking handler) releases the claim.
        Calling { #[pin] future: Fut, lease: Option<L>, forwarded: metrics::Forwarded },
        Settling { #[pin] settle: St, output: Option<Out> },
        Respond { response: Option<Answer> },
    }
}

type LeaseOf<D> = <D as DedupPolicy>::Lease;
type SettleOf<D> = <LeaseOf<D> as Lease>::SettleFuture;

pin_project! {
    /// The response future of [`PeriskopeWebhook`].
    pub struct ResponseFuture<S, B, D>
    where
        S: Service<Request<Full<Bytes>>>,
        B: Body,
        B::Error: Into<BoxError>,
        D: DedupPolicy,
    {
        #[pin]
        state: State<S::Future, Result<S::Response, S::Error>, Collect<Limited<B>>, D::ClaimFuture, LeaseOf<D>, SettleOf<D>>,
        pending: Option<Pending<S, D>>,
        // Times the request from its call to its answer (metrics).
        clock: Stopwatch,
        span: DeliverySpan,
    }
}

impl<S, B, D, ResBody> Future for ResponseFuture<S, B, D>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<BoxError>,
    D: DedupPolicy,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The inner service is called and polled inside the span: its own spans nest under it.
        #[cfg(feature = "tracing")]
        let _entered = this.span.span.enter();
        loop {
            let pending = this.pending.as_mut();
            match this.state.as_mut().project() {
                StateProj::Collecting { collect } => {
                    let collected = ready!(collect.poll(cx));
                    let pending = pending.expect("ResponseFuture polled after completion");
                    let mut parts = pending.parts.take().expect("the body is collected once");
                    let next = match admit(&mut parts, collected, &pending.config) {
                        Ok(body) => {
                            #[cfg_attr(not(feature = "axum"), allow(unused_mut))]
                            let mut request = Request::from_parts(parts, body);
                            // axum's extractors (`Bytes`, `String`, `Json`) apply their own
                            // 2 MB default limit; the layer's limit already bounded this body.
                            #[cfg(feature = "axum")]
                            axum_core::extract::DefaultBodyLimit::max(pending.config.limit)
                                .apply(&mut request);
                            this.span.admitted(&request);
                            let claim = request
                                .extensions()
                                .get::<WebhookEvent>()
                                .and_then(|event| pending.dedup.claim(event));
                            match claim {
                                Some(claim) => State::Claiming { claim, request: Some(request) },
                                None => {
                                    let (future, forwarded) = pending.call(request);
                                    State::Calling { future, lease: None, forwarded }
                                }
                            }
                        }
                        Err(Refusal::Reject(rejection)) => State::Respond {
                            response: Some(respond(&pending.config, rejection, parts.version)),
                        },
                        Err(Refusal::Ignore(kind)) => State::Respond { response: Some(ignored(kind)) },
                    };
                    this.state.set(next);
                }
                StateProj::Claiming { claim, request } => {
                    let claim = ready!(claim.poll(cx));
                    let pending = pending.expect("ResponseFuture polled after completion");
                    let mut request = request.take().expect("a claim is answered once");
                    let refuse = |rejection| State::Respond {
                        response: Some(respond(&pending.config, rejection, request.version())),
                    };
                    let (outcome, lease) = match claim {
                        Ok(Claim::New(lease)) => (DedupOutcome::New, Some(lease)),
                        Ok(Claim::Delivered) if pending.dedup.pass_through() => {
                            (DedupOutcome::Duplicate, None)
                        }
                        Ok(Claim::InFlight) if pending.dedup.pass_through() => (DedupOutcome::InFlight, None),
                        Ok(Claim::Delivered) => {
                            this.state.set(State::Respond { response: Some(duplicate(&request)) });
                            continue;
                        }
                        Ok(Claim::InFlight) => {
                            this.state.set(refuse(Rejection::DuplicateInFlight));
                            continue;
                        }
                        Err(_error) if pending.dedup.reject_when_unavailable() => {
                            #[cfg(feature = "tracing")]
                            tracing::warn!(error = %_error, "periskope webhook de-duplication store unavailable");
                            this.state.set(refuse(Rejection::DedupUnavailable));
                            continue;
                        }
                        Err(_error) => {
                            #[cfg(feature = "tracing")]
                            tracing::warn!(
                                error = %_error,
                                "periskope webhook de-duplication store unavailable; delivery handed on"
                            );
                            (DedupOutcome::StoreUnavailable, None)
                        }
                    };
                    if let Some(metadata) = request.extensions_mut().get_mut::<DeliveryMetadata>() {
                        metadata.dedup = outcome;
                    }
                    let (future, forwarded) = pending.call(request);
                    this.state.set(State::Calling { future, lease, forwarded });
                }
                StateProj::Calling { future, lease, forwarded } => {
                    let output = ready!(future.poll(cx));
                    forwarded.answered(output.as_ref().ok());
                    let Some(lease) = lease.take() else {
                        this.clock.answered();
                        this.span.answered(output.as_ref().ok());
                        return Poll::Ready(output.map(|response| response.map(ResponseBody::inner)));
                    };
                    let delivered = output.as_ref().is_ok_and(|response| response.status().is_success());
                    this.state.set(State::Settling { settle: lease.settle(delivered), output: Some(output) });
                }
                StateProj::Settling { settle, output } => {
                    let _settled = ready!(settle.poll(cx));
                    #[cfg(feature = "tracing")]
                    if let Err(error) = &_settled {
                        tracing::warn!(%error, "periskope webhook delivery handled but not recorded as delivered");
                    }
                    let output = output.take().expect("ResponseFuture polled after completion");
                    this.clock.answered();
                    this.span.answered(output.as_ref().ok());
                    return Poll::Ready(output.map(|response| response.map(ResponseBody::inner)));
                }
                StateProj::Respond { response } => {
                    let response =
                        response.take().expect("ResponseFuture polled after completion").into_response();
                    this.clock.answered();
                    this.span.answered(Some(&response));
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// The `periskope.delivery` span of one request (feature `tracing`; nothing without it): the
/// event kind, the index of the key that verified it, the body's size, and the answer's status
/// and, when the layer answered itself, its code. Never an id, a phone number or a body.
struct DeliverySpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl DeliverySpan {
    #[inline]
    fn open() -> Self {
        DeliverySpan {
            #[cfg(feature = "tracing")]
            // Until a subscriber is first installed, no span at all: the callsite's own checks
            // cost a few hundred instructions a request (`benches/instructions.rs`).
            span: if tracing::dispatcher::has_been_set() {
                tracing::info_span!(
                    "periskope.delivery",
                    event_kind = tracing::field::Empty,
                    key_index = tracing::field::Empty,
                    body_bytes = tracing::field::Empty,
                    status = tracing::field::Empty,
                    code = tracing::field::Empty,
                )
            } else {
                tracing::Span::none()
            },
        }
    }

    /// Records what verification and decoding found.
    #[inline]
    fn admitted<B>(&self, request: &Request<B>) {
        #[cfg(feature = "tracing")]
        if !self.span.is_disabled() {
            let extensions = request.extensions();
            if let Some(event) = extensions.get::<WebhookEvent>() {
                self.span.record("event_kind", event.kind().as_str());
            }
            if let Some(metadata) = extensions.get::<DeliveryMetadata>() {
                self.span.record("body_bytes", metadata.body_len);
                if let Some(key) = &metadata.key {
                    self.span.record("key_index", key.index());
                }
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = request;
    }

    /// Records the answer: its status, and the code of an answer the layer gave itself.
    #[inline]
    fn answered<B>(&self, response: Option<&Response<B>>) {
        #[cfg(feature = "tracing")]
        if let Some(response) = response.filter(|_| !self.span.is_disabled()) {
            self.span.record("status", response.status().as_u16());
            let extensions = response.extensions();
            let code = if let Some(rejection) = extensions.get::<Rejection>() {
                Some(rejection.code())
            } else if extensions.get::<IgnoredEvent>().is_some() {
                Some("ignored")
            } else {
                extensions.get::<DuplicateDelivery>().map(|_| "duplicate")
            };
            if let Some(code) = code {
                self.span.record("code", code);
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = response;
    }
}

enum Refusal {
    Reject(Rejection),
    Ignore(EventKind),
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal::Reject(rejection)
    }
}

/// Steps 3 to 7 on a collected body: verify, decode, check the age, filter, fill the extensions.
fn admit<B: Buf>(
    parts: &mut Parts,
    collected: Result<Collected<B>, BoxError>,
    config: &Config,
) -> Result<Full<Bytes>, Refusal> {
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Err(Rejection::PayloadTooLarge { limit: config.limit }.into());
        }
        Err(_) => return Err(Rejection::BodyRead.into()),
    };
    metrics::body_read(body.len());
    let verify = Stopwatch::start();
    let key = match &config.verification {
        Verification::Keys(keys) => {
            Some(keys.verify_headers(&parts.headers, &body).map_err(Rejection::Signature)?)
        }
        Verification::Disabled => None,
    };
    verify.verified();
    let decode = Stopwatch::start();
    let event = match config.max_age {
        // The window runs before the filter, so it needs the timestamp: the event is typed whole.
        Some(max_age) => {
            let event = WebhookEvent::decode(body.clone()).map_err(Rejection::Decode)?;
            check_age(&event, max_age, SystemTime::now())?;
            if !config.filter.accepts(event.kind()) {
                return Err(Refusal::Ignore(event.kind()));
            }
            event
        }
        // An event the filter refuses is answered without typing its data; its body is still
        // checked.
        None => WebhookEvent::decode_wanted(body.clone(), |kind| config.filter.accepts(kind))
            .map_err(Rejection::Decode)?
            .map_err(Refusal::Ignore)?,
    };
    decode.decoded();
    if config.strict
        && let EventData::Undecodable { kind, error, .. } = &event.event().data
    {
        return Err(Rejection::UndecodableData { kind: *kind, error: error.clone() }.into());
    }
    let mut metadata = DeliveryMetadata::new(key, body.len());
    if config.drift {
        let drift = Drift::detect(&event);
        #[cfg(feature = "tracing")]
        if !drift.is_empty() {
            tracing::debug!(
                event = event.name(),
                unknown_fields = ?drift.unknown_fields,
                unknown_values = ?drift.unknown_values,
                "periskope schema drift"
            );
        }
        metadata.drift = Some(drift);
    }
    parts.extensions.insert(metadata);
    parts.extensions.insert(RawBody(body.clone()));
    parts.extensions.insert(event);
    Ok(Full::new(body))
}

/// How far in the future a delivery's timestamp may be: clocks disagree a little.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The replay window: `event`'s envelope timestamp within `max_age` before `now`, and at
/// most [`CLOCK_SKEW`] after it.
fn check_age(event: &WebhookEvent, max_age: Duration, now: SystemTime) -> Result<(), Rejection> {
    let sent = event
        .event()
        .timestamp
        .as_ref()
        .and_then(|timestamp| timestamp.parse())
        .and_then(|time| time.to_system_time())
        .ok_or(Rejection::MissingTimestamp)?;
    let fresh = match now.duration_since(sent) {
        Ok(age) => age <= max_age,
        Err(ahead) => ahead.duration() <= CLOCK_SKEW,
    };
    if fresh { Ok(()) } else { Err(Rejection::StaleDelivery) }
}

/// An answer the middleware writes itself: its default JSON, or a custom rejection's body.
enum Answer {
    Json(Response<Full<Bytes>>),
    Custom(Response<UnsyncBoxBody<Bytes, BoxError>>),
}

impl Answer {
    fn into_response<B>(self) -> Response<ResponseBody<B>> {
        match self {
            Answer::Json(response) => response.map(ResponseBody::json),
            Answer::Custom(response) => response.map(ResponseBody::custom),
        }
    }
}

fn respond(config: &Config, rejection: Rejection, version: Version) -> Answer {
    #[cfg(feature = "tracing")]
    log_rejection(config.rejection_log_level, &rejection);
    metrics::rejected(&rejection);
    match &config.on_rejection {
        None => Answer::Json(complete(rejection.to_json_response(), rejection, version)),
        Some(on_rejection) => {
            let response = on_rejection.on_rejection(&rejection);
            Answer::Custom(complete(response, rejection, version))
        }
    }
}

/// What every rejection's response carries, whoever wrote it.
fn complete<B>(mut response: Response<B>, rejection: Rejection, version: Version) -> Response<B> {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED && !response.headers().contains_key(ALLOW) {
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
    }
    // A body refused for its size is left unread, so HTTP/1 cannot reuse the connection: say
    // so, or a keep-alive client sends its next request into a closed connection.
    if matches!(rejection, Rejection::PayloadTooLarge { .. }) && version < Version::HTTP_2 {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response.extensions_mut().insert(rejection);
    response
}

/// Logs a rejection, code and status only, at the configured level.
#[cfg(feature = "tracing")]
fn log_rejection(level: tracing::Level, rejection: &Rejection) {
    use tracing::Level;
    let (code, status) = (rejection.code(), rejection.status().as_u16());
    // `tracing`'s macros take the level as a constant.
    match level {
        Level::TRACE => tracing::trace!(code, status, "periskope webhook rejected"),
        Level::DEBUG => tracing::debug!(code, status, "periskope webhook rejected"),
        Level::INFO => tracing::info!(code, status, "periskope webhook rejected"),
        Level::WARN => tracing::warn!(code, status, "periskope webhook rejected"),
        Level::ERROR => tracing::error!(code, status, "periskope webhook rejected"),
    }
}

/// Marks a response to an event the filter refused, in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IgnoredEvent(pub EventKind);

/// Marks a response to a delivery that was already handled, in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuplicateDelivery;

fn ignored(kind: EventKind) -> Answer {
    metrics::delivery(kind, Outcome::Ignored);
    #[cfg(feature = "tracing")]
    tracing::debug!(kind = kind.as_str(), "periskope webhook event filtered out");
    let mut response = json_answer(StatusCode::OK, "event_ignored", &format!("{kind} is not handled here"));
    response.extensions_mut().insert(IgnoredEvent(kind));
    Answer::Json(response)
}

fn duplicate<B>(request: &Request<B>) -> Answer {
    metrics::answered_duplicate(request);
    #[cfg(feature = "tracing")]
    tracing::debug!("periskope webhook duplicate answered");
    let mut response = json_answer(StatusCode::OK, "duplicate", "this delivery was already handled");
    response.extensions_mut().insert(DuplicateDelivery);
    Answer::Json(response)
}
