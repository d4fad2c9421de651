//! Axum extractors for what [`PeriskopeWebhookLayer`](crate::PeriskopeWebhookLayer) put into the
//! request: the whole event, one object family, the metadata or the raw body (feature `axum`).
//!
//! ```
//! use axum::{Router, routing::post};
//! use periskope_webhook::extract::{MessageEvent, TicketEvent};
//! use periskope_webhook::event::Family;
//! use periskope_webhook::{KindSet, PeriskopeWebhookLayer, WebhookEvent};
//!
//! // A route that only receives messages reads the message without an `Option`.
//! async fn messages(event: MessageEvent) -> &'static str {
//!     println!("{} from {:?}: {:?}", event.name(), event.message().from, event.message().body);
//!     "ok"
//! }
//!
//! async fn tickets(event: TicketEvent) -> &'static str {
//!     println!("{:?}", event.ticket().ticket.as_ref().map(|ticket| &ticket.status));
//!     "ok"
//! }
//!
//! // Any event, unknown and undecodable ones included.
//! async fn everything(event: WebhookEvent) -> &'static str {
//!     println!("{}", event.name());
//!     "ok"
//! }
//!
//! let key = "peri_demo";
//! let tickets_only = KindSet::family(Family::Ticket);
//! let app: Router = Router::new()
//!     .route("/webhooks/periskope", post(everything).layer(PeriskopeWebhookLayer::new(key)))
//!     .route("/webhooks/periskope/messages", post(messages).layer(PeriskopeWebhookLayer::new(key)))
//!     .route(
//!         "/webhooks/periskope/tickets",
//!         post(tickets).layer(PeriskopeWebhookLayer::new(key).filter_events(tickets_only)),
//!     );
//! ```
//!
//! All of them are extractors only with the crate's `axum` feature: without it, axum's error is
//! that `Handler` is not implemented for the function, with no word of the feature.
//!
//! [`WebhookEvent`], [`DeliveryMetadata`] and [`RawBody`] are extractors themselves. The typed
//! extractors ([`MessageEvent`], [`ReactionEvent`], [`ChatEvent`], [`ChatNotificationEvent`],
//! [`NoteEvent`], [`TicketEvent`], [`PhoneEvent`]) check the event's family when they are
//! extracted, so their accessor cannot fail; each dereferences to the [`WebhookEvent`] for the
//! envelope, the name and the body.
//!
//! # Rejections
//! An extractor that cannot produce its value answers with an [`ExtractRejection`]: its status
//! and a small JSON body `{"code","message"}`, like the layer's [`Rejection`](crate::Rejection).
//!
//! | failure | status | `code` |
//! |---|---|---|
//! | the layer does not wrap the route (a server misconfiguration) | 500 | `periskope_layer_missing` |
//! | typed extractor, event of another family or unknown | 422 | `unexpected_event_kind` |
//! | typed extractor, event of its family whose `data` does not fit its type | 422 | `undecodable_data` |
//!
//! To keep other events from reaching a typed route, give its layer a
//! [filter](crate::PeriskopeWebhookLayer::filter_events): they are then answered `200` before
//! the handler, instead of `422` by the extractor (which Periskope would retry).

use std::fmt;
use std::ops::Deref;
use std::sync::LazyLock;

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::event::{
    Chat, ChatNotification, DataError, EventData, EventKind, Family, Message, Note, Phone, Reaction,
    TicketInfo, WebhookEvent,
};
use crate::metadata::{DeliveryMetadata, RawBody};
use crate::response::{LAYER_MISSING_CODE, LAYER_MISSING_MESSAGE, json_answer};

/// Why an extractor of this module could not produce its value.
///
/// As a response: the [status](Self::status), a JSON body with the [code](Self::code) and a
/// message (never body content beyond the event name, never a key), and the rejection itself in
/// the response's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtractRejection {
    /// The request carries no verified event: [`PeriskopeWebhookLayer`](crate::PeriskopeWebhookLayer)
    /// does not wrap this route. A server misconfiguration: 500.
    LayerMissing,
    /// A typed extractor got an event of another family, or of no family (an unknown event): 422.
    UnexpectedKind {
        /// The events the extractor takes, e.g. `ticket.*`.
        expected: &'static str,
        /// The kind of the event received.
        actual: EventKind,
    },
    /// A typed extractor got an event of its family whose `data` does not fit its type: 422.
    UndecodableData {
        /// The event's kind.
        kind: EventKind,
        /// Where and why decoding failed.
        error: DataError,
    },
}

impl ExtractRejection {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            ExtractRejection::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
            ExtractRejection::UnexpectedKind { .. } | ExtractRejection::UndecodableData { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        }
    }

    /// A short, stable, machine-readable code, e.g. `unexpected_event_kind`.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractRejection::LayerMissing => LAYER_MISSING_CODE,
            ExtractRejection::UnexpectedKind { .. } => "unexpected_event_kind",
            ExtractRejection::UndecodableData { .. } => "undecodable_data",
        }
    }
}

impl fmt::Display for ExtractRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractRejection::LayerMissing => f.write_str(LAYER_MISSING_MESSAGE),
            // The kind, not the name as sent: an unknown name is body content.
            ExtractRejection::UnexpectedKind { expected, actual } => {
                write!(f, "this route takes {expected} events, not {actual}")
            }
            // The reason may quote a value from the body; the path alone says where to look.
            ExtractRejection::UndecodableData { kind, error } => {
                write!(f, "`{}` of {kind} does not fit its type", error.path())
            }
        }
    }
}

impl std::error::Error for ExtractRejection {}

impl IntoResponse for ExtractRejection {
    fn into_response(self) -> Response {
        #[cfg(feature = "tracing")]
        tracing::debug!(code = self.code(), status = self.status().as_u16(), "periskope extractor rejected");
        let mut response = json_answer(self.status(), self.code(), &self.to_string()).map(Body::new);
        response.extensions_mut().insert(self);
        response
    }
}

/// Clones a value the layer put into the extensions, or says the layer is missing.
fn from_extensions<T: Clone + Send + Sync + 'static>(parts: &Parts) -> Result<T, ExtractRejection> {
    parts.extensions.get::<T>().cloned().ok_or(ExtractRejection::LayerMissing)
}

/// The whole event, whatever its kind: unknown and undecodable events included.
impl<S: Send + Sync> FromRequestParts<S> for WebhookEvent {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_extensions(parts)
    }
}

/// The delivery's metadata (signing key, length, de-duplication outcome, drift).
impl<S: Send + Sync> FromRequestParts<S> for DeliveryMetadata {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_extensions(parts)
    }
}

/// The verified body exactly as received (shared, not copied).
impl<S: Send + Sync> FromRequestParts<S> for RawBody {
    type Rejection = ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        from_extensions(parts)
    }
}

macro_rules! typed_extractors {
    ($(
        $(#[$doc:meta])*
        $name:ident($object:ident) via $accessor:ident, family $family:ident;
    )*) => {$(
        $(#[$doc])*
        ///
        /// Dereferences to the [`WebhookEvent`] (envelope, name, body). Rejects other events with
        /// `422 unexpected_event_kind`, and events of its family whose `data` does not fit with
        /// `422 undecodable_data` (see [`ExtractRejection`]).
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name(WebhookEvent);

        impl $name {
            #[doc = concat!("The event's [`", stringify!($object), "`].")]
            pub fn $accessor(&self) -> &$object<'_> {
                // Only a `Default` placeholder, never shown: `TryFrom` admits only events whose
                // accessor is `Some`, and a `WebhookEvent` never changes. It replaces a panic.
                static NEVER: LazyLock<$object<'static>> = LazyLock::new(Default::default);
                self.0.event().$accessor().unwrap_or(&*NEVER)
            }

            /// The whole event.
            pub fn into_inner(self) -> WebhookEvent {
                self.0
            }
        }

        impl TryFrom<WebhookEvent> for $name {
            type Error = ExtractRejection;

            #[doc = concat!("Admits events of [`Family::", stringify!($family), "`] whose `data` was decoded.")]
            fn try_from(event: WebhookEvent) -> Result<Self, ExtractRejection> {
                if event.event().$accessor().is_some() {
                    return Ok($name(event));
                }
                Err(match &event.event().data {
                    EventData::Undecodable { kind, error, .. } if Family::$family.contains(*kind) => {
                        ExtractRejection::UndecodableData { kind: *kind, error: error.clone() }
                    }
                    data => ExtractRejection::UnexpectedKind {
                        expected: Family::$family.names(),
                        actual: data.kind(),
                    },
                })
            }
        }

        impl Deref for $name {
            type Target = WebhookEvent;

            fn deref(&self) -> &WebhookEvent {
                &self.0
            }
        }

        impl From<$name> for WebhookEvent {
            fn from(typed: $name) -> WebhookEvent {
                typed.0
            }
        }

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ExtractRejection;

            async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
                // Checked on a borrow, so that a rejection does not cost a clone.
                let event = parts.extensions.get::<WebhookEvent>().ok_or(ExtractRejection::LayerMissing)?;
                $name::try_from(event.clone())
            }
        }
    )*};
}

typed_extractors! {
    /// A `message.*` event: created, updated, deleted, ack updated, flagged, unflagged, ticket
    /// attached.
    MessageEvent(Message) via message, family Message;
    /// A `reaction.*` event: created or updated.
    ReactionEvent(Reaction) via reaction, family Reaction;
    /// A `chat.created` or `chat.custom_properties.updated` event (not `chat.notification.created`:
    /// see [`ChatNotificationEvent`]).
    ChatEvent(Chat) via chat, family Chat;
    /// A `chat.notification.created` event.
    ChatNotificationEvent(ChatNotification) via chat_notification, family ChatNotification;
    /// A `note.created` event: a private note.
    NoteEvent(Note) via note, family Note;
    /// A `ticket.*` event: created, updated or deleted.
    TicketEvent(TicketInfo) via ticket, family Ticket;
    /// An `org.phone.*` event: connected, disconnected, updated, QR code.
    PhoneEvent(Phone) via phone, family Phone;
}
