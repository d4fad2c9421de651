//! [`Rejection`]: why the middleware answered a request itself, and how that answer is written.
//!
//! ```
//! use http::StatusCode;
//! use periskope_webhook::{PeriskopeWebhookLayer, Rejection};
//!
//! // Replace the default JSON answer with plain text; the status stays the rejection's own.
//! let layer = PeriskopeWebhookLayer::new("peri_demo-key")
//!     .on_rejection(|rejection: &Rejection| (rejection.status(), format!("rejected: {}", rejection.code())));
//! # let _ = layer;
//! assert_eq!(Rejection::PayloadTooLarge { limit: 10 }.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! ```
//!
//! Without the `axum` feature the closure returns an `http::Response` with any body, such as
//! `http_body_util::Full<Bytes>`.

use std::fmt;

use bytes::Bytes;
use http::header::ALLOW;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;

use crate::event::{DataError, DecodeError, EventKind};
use crate::response::{BoxError, boxed, json_answer};
use crate::signature::SignatureError;

/// Why a request did not reach the inner service.
///
/// Each rejection has an HTTP [`status`](Rejection::status) and a short, stable
/// [`code`](Rejection::code). It is attached to the response's extensions, so outer layers and
/// tests can tell what happened. Its `Display` carries no body content and no key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The method was not POST: 405 with `Allow: POST`.
    MethodNotAllowed,
    /// The body is larger than the limit: 413.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body failed while being read: 400.
    BodyRead,
    /// The signature is missing, malformed, or matches no key: 401.
    Signature(SignatureError),
    /// The verified body is not a Periskope delivery: 400.
    Decode(DecodeError),
    /// De-duplication only: the same delivery is being handled right now: 409, so that the
    /// sender retries it later rather than it being lost if the first attempt fails.
    DuplicateInFlight,
    /// De-duplication with [`Dedup::reject_when_unavailable`](crate::dedup::Dedup::reject_when_unavailable)
    /// only: the store could not answer: 503, so that the sender retries later.
    DedupUnavailable,
    /// [Replay window](crate::PeriskopeWebhookLayer::max_age) only: the envelope `timestamp` is
    /// older than the window, or more than a minute in the future: 400.
    StaleDelivery,
    /// [Replay window](crate::PeriskopeWebhookLayer::max_age) only: the envelope has no
    /// `timestamp`, or one that cannot be read as a time: 400.
    MissingTimestamp,
    /// Strict mode only: a known event whose `data` does not fit its type: 422.
    UndecodableData {
        /// The event's kind.
        kind: EventKind,
        /// Where and why decoding failed.
        error: DataError,
    },
}

impl Rejection {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyRead
            | Rejection::Decode(_)
            | Rejection::StaleDelivery
            | Rejection::MissingTimestamp => StatusCode::BAD_REQUEST,
            Rejection::Signature(_) => StatusCode::UNAUTHORIZED,
            Rejection::UndecodableData { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::DuplicateInFlight => StatusCode::CONFLICT,
            Rejection::DedupUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short, stable, machine-readable code, e.g. `signature_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::PayloadTooLarge { .. } => "payload_too_large",
            Rejection::BodyRead => "body_read_failed",
            Rejection::Signature(error) => error.code(),
            Rejection::Decode(error) => error.code(),
            Rejection::UndecodableData { .. } => "undecodable_data",
            Rejection::DuplicateInFlight => "duplicate_in_flight",
            Rejection::DedupUnavailable => "dedup_unavailable",
            Rejection::StaleDelivery => "stale_delivery",
            Rejection::MissingTimestamp => "missing_timestamp",
        }
    }

    /// The default response: the status, and a small JSON body with `code` and `message`.
    pub fn to_json_response(&self) -> Response<Full<Bytes>> {
        let mut response = json_answer(self.status(), self.code(), &self.to_string());
        if *self == Rejection::MethodNotAllowed {
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(Method::POST.as_str()));
        }
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MethodNotAllowed => f.write_str("Periskope webhooks are delivered with POST"),
            Rejection::PayloadTooLarge { limit } => write!(f, "body is larger than {limit} bytes"),
            Rejection::BodyRead => f.write_str("the request body failed while being read"),
            Rejection::DuplicateInFlight => f.write_str("the same delivery is being handled; retry later"),
            Rejection::DedupUnavailable => f.write_str("the de-duplication store cannot answer; retry later"),
            Rejection::StaleDelivery => {
                f.write_str("the delivery's timestamp is outside the accepted window")
            }
            Rejection::MissingTimestamp => f.write_str("the delivery has no readable timestamp"),
            Rejection::Signature(error) => write!(f, "{error}"),
            Rejection::Decode(error) => write!(f, "{error}"),
            // The reason may quote a value from the body; the path alone says where to look,
            // and its map keys (WhatsApp ids, phone numbers) are masked.
            Rejection::UndecodableData { kind, error } => {
                write!(f, "`{}` of {kind} does not fit its type", error.path())
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// Writes the response for a [`Rejection`]: the policy behind
/// [`PeriskopeWebhookLayer::on_rejection`](crate::PeriskopeWebhookLayer::on_rejection).
///
/// Implemented for closures taking `&Rejection`. With the `axum` feature they may return
/// anything that implements axum's `IntoResponse` (`(StatusCode, &str)`, `Json<_>`, a
/// `Response`); without it, an `http::Response` with any body of `Bytes`. Whatever it returns,
/// the middleware adds the [`Rejection`] to the response's extensions, and sets `Allow: POST`
/// on a 405 that lacks it.
pub trait OnRejection: Send + Sync + 'static {
    /// The response for `rejection`, its body boxed.
    fn on_rejection(&self, rejection: &Rejection) -> Response<UnsyncBoxBody<Bytes, BoxError>>;
}

/// Any closure returning a response: the blanket implementation without the `axum` feature.
/// The `axum` one covers these closures too (an `http::Response` is `IntoResponse`), so turning
/// the feature on breaks no code.
#[cfg(not(feature = "axum"))]
impl<F, B> OnRejection for F
where
    F: Fn(&Rejection) -> Response<B> + Send + Sync + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn on_rejection(&self, rejection: &Rejection) -> Response<UnsyncBoxBody<Bytes, BoxError>> {
        self(rejection).map(boxed)
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<F, T> OnRejection for F
where
    F: Fn(&Rejection) -> T + Send + Sync + 'static,
    T: axum_core::response::IntoResponse,
{
    fn on_rejection(&self, rejection: &Rejection) -> Response<UnsyncBoxBody<Bytes, BoxError>> {
        self(rejection).into_response().map(boxed)
    }
}
