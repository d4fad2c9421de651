//! Receive Periskope webhooks in any tower stack: bounded, verified, typed.
//!
//! ```
//! use axum::{Router, routing::post};
//! use periskope_webhook::{EventData, PeriskopeWebhookLayer, WebhookEvent};
//!
//! // With the `axum` feature, the decoded delivery is an extractor.
//! async fn periskope(delivery: WebhookEvent) -> &'static str {
//!     match &delivery.event().data {
//!         EventData::MessageCreated(message) => println!("new message: {:?}", message.body),
//!         EventData::TicketUpdated(info) => println!("ticket: {:?}", info.ticket),
//!         other => println!("{}", other.kind()),
//!     }
//!     "ok"
//! }
//!
//! let key = std::env::var("PERISKOPE_SIGNING_KEY").unwrap_or_else(|_| "peri_demo".into());
//! let app: Router = Router::new()
//!     .route("/webhooks/periskope", post(periskope))
//!     .layer(PeriskopeWebhookLayer::new(key));
//! ```
//!
//! [`PeriskopeWebhookLayer`] bounds the body, verifies the `x-periskope-signature` HMAC, decodes
//! the verified body into a typed [`Event`], and hands the request on with a [`WebhookEvent`],
//! the [`RawBody`] and [`DeliveryMetadata`] in its extensions. It works with any tower stack
//! (axum, hyper, tonic); the handler can still read the body, an
//! [`http_body_util::Full<Bytes>`](http_body_util::Full) over the same buffer.
//!
//! # Rejections
//! A request that fails a step never reaches the handler. It is answered with the
//! [`Rejection`]'s status and a small JSON body, and the rejection is attached to the
//! response's extensions:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, StatusCode};
//! use http_body_util::Full;
//! use periskope_webhook::{PeriskopeWebhookLayer, Rejection, SIGNATURE_HEADER, SignatureError};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The handler would answer 200; a forged request never gets there.
//! let handler = service_fn(|_request: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! });
//! let service = PeriskopeWebhookLayer::new("peri_demo").layer(handler);
//!
//! let forged = Request::post("/webhooks/periskope")
//!     .header(SIGNATURE_HEADER, "00".repeat(32))
//!     .body(Full::new(Bytes::from(r#"{"event":"message.created","data":{}}"#)))
//!     .unwrap();
//! let response = service.oneshot(forged).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     response.extensions().get::<Rejection>(),
//!     Some(&Rejection::Signature(SignatureError::Mismatch)),
//! );
//! # }
//! ```
//!
//! | step | failure | status | `code` |
//! |---|---|---|---|
//! | method | not POST | 405 + `Allow: POST` | `method_not_allowed` |
//! | size | over the limit (by `Content-Length` or while reading) | 413 | `payload_too_large` |
//! | read | the body errors | 400 | `body_read_failed` |
//! | signature | missing, malformed, wrong, two that disagree | 401 | `signature_missing`, `signature_malformed`, `signature_mismatch`, `signature_conflict` |
//! | decode | not UTF-8, not JSON, not an object, no event name, bad envelope | 400 | `invalid_utf8`, `malformed_json`, `not_an_object`, `missing_event_name`, `invalid_envelope` |
//! | replay window ([`PeriskopeWebhookLayer::max_age`]) | timestamp too old or ahead; none | 400 | `stale_delivery`; `missing_timestamp` |
//! | filter | event kind not accepted | 200 | `event_ignored` |
//! | strict mode | known event, `data` does not fit | 422 | `undecodable_data` |
//! | de-duplication | already handled; being handled now; store unavailable (when asked) | 200; 409; 503 | `duplicate`; `duplicate_in_flight`; `dedup_unavailable` |
//! | inbox (`inbox::Acceptor`, feature `inbox`) | stored; already stored; cannot store; file full | 200; 200; 503; 503 | `accepted`; `duplicate`; `inbox_unavailable`; `inbox_full` |
//!
//! # The durable inbox
//! For handlers that do real work, the `inbox` module (feature `inbox`) stores each verified
//! delivery before answering `200` and runs the handlers from storage, with retries: the
//! recommended setup. `shutdown_signal()` stops the server and the worker in order.
//!
//! # Duplicates and drift
//! [`dedup`] answers deliveries already handled (Periskope sends one group message once per
//! connected org phone, and its signature has no nonce) without calling the handler again;
//! [`drift`] reports the fields and values Periskope sent that the typed model does not know.
//! Both are off by default: [`PeriskopeWebhookLayer::deduplicate`],
//! [`PeriskopeWebhookLayer::report_drift`].
//!
//! # Events
//! Periskope POSTs a JSON envelope for each event to a URL you register:
//!
//! ```json
//! {"event": "message.created", "data": { ...the Message... },
//!  "org_id": "2997dd64-...", "timestamp": "2025-01-20T07:51:48.209+00:00"}
//! ```
//!
//! [`event`] decodes it into an [`Event`]: the envelope (`org_id`, `timestamp`,
//! `previous_attributes`) and [`EventData`], one arm for each of the 20 [`EventKind`]s, typed as
//! [`event::Message`], [`event::Reaction`], [`event::Chat`], [`event::ChatNotification`],
//! [`event::Note`], [`event::TicketInfo`] or [`event::Phone`].
//!
//! ```
//! use periskope_webhook::{EventData, EventKind, WebhookEvent};
//!
//! let body = bytes::Bytes::from_static(br#"{"event":"message.created","data":{
//!     "message_id":"true_1203@g.us_3EB0_9190@c.us","chat_id":"1203@g.us","body":"Hello",
//!     "ack":"2","links":"[]","timestamp":"2024-05-13 11:19:34+00"},
//!     "org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5"}"#);
//! let delivery = WebhookEvent::decode(body).expect("a Periskope delivery");
//! match &delivery.event().data {
//!     EventData::MessageCreated(message) => {
//!         assert_eq!(message.body.as_deref(), Some("Hello"));
//!         assert_eq!(message.timestamp.as_ref().and_then(|t| t.unix_millis()), Some(1_715_599_174_000));
//!     }
//!     EventData::Unknown { name, .. } => println!("new event kind {name}"),
//!     EventData::Undecodable { error, .. } => println!("schema drift at {}", error.path()),
//!     _ => {}
//! }
//! assert_eq!(delivery.kind(), EventKind::MessageCreated);
//! ```
//!
//! # Quirks
//! Periskope's wire format is loose; every delivery still decodes:
//! - the name comes in `event` or `event_type`, and `data` may precede it;
//! - numbers come as strings or numbers (`"ack": "2"` and `"ack": 2`);
//! - `links` is an array or a string holding one;
//! - WhatsApp id objects spell keys `fromMe`/`from_me` and `_serialized`/`serialized`;
//! - timestamps mix PostgreSQL and ISO 8601 text and Unix numbers ([`event::Timestamp`]);
//! - enumerations grow: unknown values are kept in an `Other` arm;
//! - every field may be null or absent, and unknown fields are ignored;
//! - an unknown event name, or `data` that does not fit its type, still yields an event with
//!   the raw `data` ([`EventData::Unknown`], [`EventData::Undecodable`]).
//!
//! # Speed
//! Strings are slices of the body, checked as UTF-8 once; known events decode in one pass with
//! no intermediate `serde_json::Value`. [`WebhookEvent`] holds the body (`bytes::Bytes`, shared,
//! not copied) and the event together, so it is `'static` and can go into `http::Extensions`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
pub mod dedup;
pub mod drift;
pub mod event;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod filter;
#[cfg(feature = "inbox")]
pub mod inbox;
mod layer;
mod metadata;
pub mod metrics;
pub mod redact;
mod rejection;
mod response;
pub mod router;
#[cfg(feature = "inbox")]
mod shutdown;
pub mod signature;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

/// The README's snippets, compiled and run as doctests so that a broken one fails the build.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The hardening notes' snippets, as doctests too.
#[cfg(doctest)]
#[doc = include_str!("../docs/HARDENING.md")]
struct HardeningDoctests;

pub use dedup::{Dedup, DedupKey, DedupStore, EventKeys, MemoryStore, NoDedup};
pub use event::{Event, EventData, EventKind, WebhookEvent};
pub use filter::{EventFilter, KindSet};
pub use layer::{
    DEFAULT_BODY_LIMIT, DuplicateDelivery, IgnoredEvent, PeriskopeWebhook, PeriskopeWebhookLayer,
    ResponseFuture,
};
pub use metadata::{DeliveryMetadata, RawBody};
pub use rejection::{OnRejection, Rejection};
pub use response::{BoxError, ResponseBody};
pub use router::EventRouter;
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
pub use shutdown::{ShutdownSignal, shutdown_signal};
pub use signature::{
    EmptyKey, IntoSigningKey, KeyMatch, SIGNATURE_HEADER, SignatureError, SigningKey, SigningKeys,
};
