//! [`DeliveryMetadata`]: what the middleware learned about a delivery besides its event.
//!
//! ```
//! use http::Request;
//! use periskope_webhook::DeliveryMetadata;
//!
//! fn describe<B>(request: &Request<B>) -> String {
//!     match request.extensions().get::<DeliveryMetadata>() {
//!         Some(meta) => format!("{} bytes, key {:?}", meta.body_len, meta.key.as_ref().map(|k| k.id())),
//!         None => "not behind PeriskopeWebhookLayer".to_owned(),
//!     }
//! }
//! # assert_eq!(describe(&Request::new(())), "not behind PeriskopeWebhookLayer");
//! ```

use bytes::Bytes;

use crate::dedup::DedupOutcome;
use crate::drift::Drift;
use crate::signature::KeyMatch;

/// Facts about one delivery, in the request extensions next to the
/// [`WebhookEvent`](crate::WebhookEvent).
///
/// With the crate's `axum` feature it is an extractor too; without it, axum only reports that
/// `Handler` is not implemented for a handler that takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryMetadata {
    /// The key that verified the signature; `None` only when verification was switched off
    /// with [`PeriskopeWebhookLayer::insecure_without_verification`](crate::PeriskopeWebhookLayer::insecure_without_verification).
    pub key: Option<KeyMatch>,
    /// The body's length in bytes.
    pub body_len: usize,
    /// What de-duplication made of this delivery: [`DedupOutcome::Off`] without a policy;
    /// with one, [`DedupOutcome::New`], a duplicate forwarded in
    /// [pass-through](crate::dedup::Dedup::pass_through) mode, or
    /// [`DedupOutcome::StoreUnavailable`] when the store could not answer.
    pub dedup: DedupOutcome,
    /// What the typed model did not know in this delivery; set only when
    /// [`PeriskopeWebhookLayer::report_drift`](crate::PeriskopeWebhookLayer::report_drift) is on.
    pub drift: Option<Drift>,
}

impl DeliveryMetadata {
    /// Metadata for a body of `body_len` bytes verified by `key`.
    pub fn new(key: Option<KeyMatch>, body_len: usize) -> Self {
        DeliveryMetadata { key, body_len, dedup: DedupOutcome::Off, drift: None }
    }
}

/// The raw request body, in the request extensions: the same buffer the replayed body and the
/// [`WebhookEvent`](crate::WebhookEvent) share, not a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawBody(pub Bytes);
