//! [`Acceptor`]: the service behind [`PeriskopeWebhookLayer`](crate::PeriskopeWebhookLayer)
//! that stores each verified delivery and answers `200` once it is durable.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::Sleep;
use tower_service::Service;

use super::alert::Alerts;
use super::{InboxError, InboxStore, NewDelivery, Stored};
use crate::dedup::KeyFn;
use crate::event::WebhookEvent;
use crate::metadata::DeliveryMetadata;
use crate::metrics::{self, Outcome};
use crate::response::{LAYER_MISSING_CODE, LAYER_MISSING_MESSAGE, json_answer};

/// A tower [`Service`] that stores each verified delivery in an [`InboxStore`] and answers:
///
/// | outcome | status | `code` |
/// |---|---|---|
/// | stored durably | 200 | `accepted` |
/// | the same occurrence is already stored | 200 | `duplicate` |
/// | the store is full ([`SqliteOptions::max_size`](super::SqliteOptions::max_size)) | 503 + `Retry-After: 60` | `inbox_full` |
/// | storage failed, or took longer than [`Acceptor::store_timeout`] | 503 + `Retry-After: 5` | `inbox_unavailable` |
/// | no [`WebhookEvent`]: the layer does not wrap this service | 500 | `periskope_layer_missing` |
///
/// The outcome is also in the response extensions as [`Accepted`] (for the 2xx answers). With
/// the `opentelemetry` feature, the job keeps the context of the span the acceptor is called in
/// (the layer's `periskope.delivery`) as a W3C `traceparent` ([`NewDelivery::traceparent`]), so
/// that its attempts hang under the delivery.
/// Build it with [`Inbox::acceptor`](super::Inbox::acceptor), so that the worker of the same
/// process wakes as soon as a job is stored.
#[derive(Clone, Debug)]
pub struct Acceptor<St, K> {
    store: St,
    keys: K,
    wake: Option<Arc<Notify>>,
    store_timeout: Duration,
    alerts: Option<Arc<Alerts>>,
}

/// How long a delivery's insert may take before it is answered `503` (the sender retries, and
/// a copy stored late is de-duplicated).
const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the [`Acceptor`] did with a delivery it answered `200`, in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted(pub Stored);

impl<St: InboxStore, K: KeyFn> Acceptor<St, K> {
    /// An acceptor storing into `store`, keyed by `keys`, waking `wake` for each new job.
    pub fn new(store: St, keys: K, wake: Option<Arc<Notify>>) -> Self {
        Acceptor { store, keys, wake, store_timeout: DEFAULT_STORE_TIMEOUT, alerts: None }
    }

    /// Reports a full store to `alerts` ([`Inbox::on_alert`](super::Inbox::on_alert)).
    pub(crate) fn alerts(mut self, alerts: Option<Arc<Alerts>>) -> Self {
        self.alerts = alerts;
        self
    }

    /// How long storing one delivery may take before it is answered `503 inbox_unavailable`
    /// (default 10 s). The insert may still land: Periskope retries, and the copy is answered
    /// as a duplicate.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }
}

impl<St, K, B> Service<Request<B>> for Acceptor<St, K>
where
    St: InboxStore,
    K: KeyFn,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = AcceptFuture<St::InsertFuture>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let Some(event) = request.extensions().get::<WebhookEvent>() else {
            return AcceptFuture::ready(json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                LAYER_MISSING_CODE,
                LAYER_MISSING_MESSAGE,
            ));
        };
        let signing_key = request
            .extensions()
            .get::<DeliveryMetadata>()
            .and_then(|metadata| metadata.key.as_ref())
            .map(|key| key.id().to_owned());
        let mut delivery = NewDelivery::new(event, &self.keys.key(event), SystemTime::now());
        delivery.signing_key = signing_key;
        request.uri().path().clone_into(&mut delivery.path);
        // Called inside the layer's `periskope.delivery` span: the attempts hang under it.
        #[cfg(feature = "opentelemetry")]
        {
            delivery.traceparent = super::trace_context::current_traceparent();
        }
        AcceptFuture {
            state: AcceptState::Storing {
                insert: self.store.insert(delivery),
                deadline: tokio::time::sleep(self.store_timeout),
                wake: self.wake.clone(),
                alerts: self.alerts.clone(),
            },
        }
    }
}

pin_project! {
    /// The response future of [`Acceptor`].
    pub struct AcceptFuture<F> {
        #[pin]
        state: AcceptState<F>,
    }
}

pin_project! {
    #[project = AcceptStateProj]
    enum AcceptState<F> {
        Storing { #[pin] insert: F, #[pin] deadline: Sleep, wake: Option<Arc<Notify>>, alerts: Option<Arc<Alerts>> },
        Ready { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F> AcceptFuture<F> {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        AcceptFuture { state: AcceptState::Ready { response: Some(response) } }
    }
}

impl<F> Future for AcceptFuture<F>
where
    F: Future<Output = Result<Stored, InboxError>>,
{
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let response = match state.as_mut().project() {
            AcceptStateProj::Storing { insert, deadline, wake, alerts } => match insert.poll(cx) {
                Poll::Pending => {
                    ready!(deadline.poll(cx));
                    #[cfg(feature = "tracing")]
                    tracing::error!("periskope inbox took too long to store a delivery (503)");
                    refused(
                        "inbox_unavailable",
                        "the delivery could not be stored in time; retry later",
                        "5",
                        Outcome::Unavailable,
                    )
                }
                Poll::Ready(stored) => match stored {
                    Ok(stored) => {
                        if let (Stored::New, Some(wake)) = (stored, wake.as_ref()) {
                            wake.notify_one();
                        }
                        if let (Stored::New, Some(alerts)) = (stored, alerts.as_ref()) {
                            alerts.stored();
                        }
                        let mut response = match stored {
                            Stored::New => json_answer(StatusCode::OK, "accepted", "stored for processing"),
                            Stored::Duplicate => {
                                let mut response = json_answer(
                                    StatusCode::OK,
                                    "duplicate",
                                    "this delivery is already stored",
                                );
                                metrics::report(&mut response, Outcome::Duplicate);
                                response
                            }
                        };
                        response.extensions_mut().insert(Accepted(stored));
                        response
                    }
                    Err(InboxError::Full) => {
                        if let Some(alerts) = alerts.as_ref() {
                            alerts.store_full();
                        }
                        #[cfg(feature = "tracing")]
                        tracing::error!("periskope inbox is full: a delivery was refused (503)");
                        // A full store frees space only as retention purges handled jobs.
                        refused("inbox_full", "the inbox is full; retry later", "60", Outcome::Full)
                    }
                    Err(_error) => {
                        #[cfg(feature = "tracing")]
                        tracing::error!(error = %_error, "periskope inbox could not store a delivery");
                        refused(
                            "inbox_unavailable",
                            "the delivery could not be stored; retry later",
                            "5",
                            Outcome::Unavailable,
                        )
                    }
                },
            },
            // Like a fused future, rather than a panic.
            AcceptStateProj::Ready { response } => match response.take() {
                Some(response) => response,
                None => return Poll::Pending,
            },
        };
        state.set(AcceptState::Ready { response: None });
        Poll::Ready(Ok(response))
    }
}

/// A `503` that asks the sender to retry after `seconds`.
fn refused(code: &str, message: &str, seconds: &'static str, outcome: Outcome) -> Response<Full<Bytes>> {
    let mut response = json_answer(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static(seconds));
    metrics::report(&mut response, outcome);
    response
}
