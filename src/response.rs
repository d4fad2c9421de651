//! The answers the crate writes itself: the `{"code","message"}` JSON body every one of them
//! carries, and [`ResponseBody`], the layer's response body (the inner service's or its own).

use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;

/// The error type of [`ResponseBody`], and of a custom rejection body: any error, boxed.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The code and message of an answer given when no [`WebhookEvent`](crate::WebhookEvent) is in
/// the request extensions, by the router and the extractors alike.
pub(crate) const LAYER_MISSING_CODE: &str = "periskope_layer_missing";
pub(crate) const LAYER_MISSING_MESSAGE: &str =
    "server misconfiguration: PeriskopeWebhookLayer does not wrap this route, so there is no verified event";

/// A JSON answer `{"code": code, "message": message}` with `status`: the one shape of every
/// answer the crate writes (rejections, the router's, the extractors', ignored and duplicate
/// deliveries).
pub(crate) fn json_answer(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": code, "message": message });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pin_project! {
    /// The body of [`PeriskopeWebhook`](crate::PeriskopeWebhook)'s responses: the inner
    /// service's, or the middleware's own answer (a rejection, an ignored or duplicate
    /// delivery).
    ///
    /// Its error is boxed so that a custom rejection body (any body, e.g. axum's) and the inner
    /// service's body can share one type; axum, hyper and tonic all take boxed errors.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Json { body: Full<Bytes> },
        Custom { body: UnsyncBoxBody<Bytes, BoxError> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody { kind: Kind::Inner { body } }
    }

    pub(crate) fn json(body: Full<Bytes>) -> Self {
        ResponseBody { kind: Kind::Json { body } }
    }

    pub(crate) fn custom(body: UnsyncBoxBody<Bytes, BoxError>) -> Self {
        ResponseBody { kind: Kind::Custom { body } }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => {
                body.poll_frame(cx).map(|frame| frame.map(|result| result.map_err(Into::into)))
            }
            KindProj::Json { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|result| result.map_err(|never| match never {}))),
            KindProj::Custom { body } => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Json { body } => body.is_end_stream(),
            Kind::Custom { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Json { body } => body.size_hint(),
            Kind::Custom { body } => body.size_hint(),
        }
    }
}

/// Boxes any body into the custom-answer body.
pub(crate) fn boxed<B>(body: B) -> UnsyncBoxBody<Bytes, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
