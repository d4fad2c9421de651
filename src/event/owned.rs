//! [`WebhookEvent`]: a decoded event that owns its body, for request extensions and queues.
//!
//! ```
//! use bytes::Bytes;
//! use periskope_webhook::event::{EventKind, WebhookEvent};
//!
//! let body = Bytes::from_static(br#"{"event":"note.created","data":{"body":"Call back"}}"#);
//! let event = WebhookEvent::decode(body.clone()).unwrap();
//! assert_eq!(event.kind(), EventKind::NoteCreated);
//! assert_eq!(event.event().note().unwrap().body.as_deref(), Some("Call back"));
//! assert_eq!(event.raw_data().unwrap().get(), r#"{"body":"Call back"}"#);
//! // The event shares the body's buffer rather than copying it.
//! assert_eq!(event.body().as_ptr(), body.as_ptr());
//! ```

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use self_cell::self_cell;
use serde::Deserialize;

use super::decode::{Decoded, decode_wanted, utf8};
use super::{DecodeError, Event, EventKind, RawJson};

/// A decoded [`Event`] together with the body it borrows from: `'static`, `Send`, `Sync`, and
/// cloned by reference count.
///
/// The event's strings are slices of the body (a `Bytes` buffer, shared, not copied), which is
/// what makes decoding fast; this type keeps the two together so the event can travel in
/// `http::Extensions`, across tasks, or into a queue.
///
/// In an axum handler it is an extractor (`async fn handler(event: WebhookEvent)`) with the
/// crate's `axum` feature. Without that feature axum only reports that `Handler` is not
/// implemented for the function: turn the feature on (or take `Extension<WebhookEvent>`).
#[derive(Clone)]
pub struct WebhookEvent {
    inner: Arc<BodyAndEvent>,
}

self_cell!(
    /// The body and the event borrowing from it, in one allocation.
    struct BodyAndEvent {
        owner: Bytes,
        #[covariant]
        dependent: Event,
    }
);

impl WebhookEvent {
    /// Decodes a delivery body, sharing its buffer.
    pub fn decode(body: Bytes) -> Result<Self, DecodeError> {
        let decoded = BodyAndEvent::try_new(body, |body: &Bytes| Event::from_slice(body))?;
        Ok(WebhookEvent { inner: Arc::new(decoded) })
    }

    /// Decodes `body` if `wanted` accepts its kind; otherwise gives the kind, having checked the
    /// body as [`WebhookEvent::decode`] would (same errors) without typing its `data`.
    pub(crate) fn decode_wanted(
        body: Bytes,
        wanted: impl Fn(EventKind) -> bool,
    ) -> Result<Result<Self, EventKind>, DecodeError> {
        enum Outcome {
            Invalid(DecodeError),
            Unwanted(EventKind),
        }
        let decoded = BodyAndEvent::try_new(body, |body: &Bytes| {
            let text = utf8(body).map_err(Outcome::Invalid)?;
            match decode_wanted(text, &wanted).map_err(Outcome::Invalid)? {
                Decoded::Event(event) => Ok(event),
                Decoded::Unwanted(kind) => Err(Outcome::Unwanted(kind)),
            }
        });
        match decoded {
            Ok(decoded) => Ok(Ok(WebhookEvent { inner: Arc::new(decoded) })),
            Err(Outcome::Unwanted(kind)) => Ok(Err(kind)),
            Err(Outcome::Invalid(error)) => Err(error),
        }
    }

    /// Builds the body Periskope would send for `event` (compact JSON) and decodes it.
    ///
    /// For tests of your own handlers: the result is what the middleware would hand them.
    pub fn from_event(event: &Event<'_>) -> Self {
        let body = serde_json::to_vec(event).expect("an Event serialises: every map key is a string");
        WebhookEvent::decode(Bytes::from(body))
            .expect("a serialised Event decodes: it is an object with a name")
    }

    /// The decoded event, borrowing from [`WebhookEvent::body`].
    pub fn event(&self) -> &Event<'_> {
        self.inner.borrow_dependent()
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.event().kind()
    }

    /// The event name as sent.
    pub fn name(&self) -> &str {
        self.event().name()
    }

    /// The body exactly as received.
    pub fn body(&self) -> &Bytes {
        self.inner.borrow_owner()
    }

    /// The `data` value exactly as received, as a slice of the body; `None` without `data`.
    ///
    /// Typed events do not keep it aside (that would be a second pass over every body): this
    /// scans the body again without allocating, and only when called.
    pub fn raw_data(&self) -> Option<RawJson<'_>> {
        if let Some(raw) = self.event().raw_data() {
            return Some(raw.clone());
        }
        #[derive(Deserialize)]
        struct DataOnly<'a> {
            #[serde(borrow)]
            data: Option<RawJson<'a>>,
        }
        serde_json::from_slice::<DataOnly<'_>>(self.body()).ok()?.data
    }
}

impl fmt::Debug for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.event(), f)
    }
}

impl PartialEq for WebhookEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event() == other.event()
    }
}
