//! [`EventRouter`]: one async handler per event kind, as with Periskope's SDK
//! (`client.on('message.created', ...)`), behind [`PeriskopeWebhookLayer`](crate::PeriskopeWebhookLayer).
//!
//! ```
//! use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent};
//! use tower::Layer;
//!
//! async fn message_created(event: WebhookEvent) -> Result<(), std::io::Error> {
//!     if let Some(message) = event.event().message() {
//!         println!("{:?} wrote {:?}", message.from, message.body);
//!     }
//!     Ok(())
//! }
//!
//! async fn ticket_updated(event: WebhookEvent) -> Result<(), &'static str> {
//!     let ticket = event.event().ticket().and_then(|info| info.ticket.as_ref());
//!     println!("ticket {:?} is now {:?}", ticket.and_then(|t| t.ticket_id.as_deref()), ticket.map(|t| &t.status));
//!     Ok(())
//! }
//!
//! let router = EventRouter::new()
//!     .on_message_created(message_created)
//!     .on_ticket_updated(ticket_updated)
//!     .on_unknown(|event: WebhookEvent| async move {
//!         println!("new event kind {}", event.name());
//!         Ok::<_, std::convert::Infallible>(())
//!     });
//!
//! // As an axum route ...
//! let app: axum::Router = axum::Router::new()
//!     .route_service("/webhooks/periskope", PeriskopeWebhookLayer::new("peri_demo").layer(router.clone()));
//! // ... or as a whole hyper service (with `hyper_util::service::TowerToHyperService`).
//! let service = PeriskopeWebhookLayer::new("peri_demo").layer(router);
//! # let _ = (app, service);
//! ```
//!
//! # Handlers
//! A handler is an async function (or closure) that returns `Result<(), E>`, with `E`
//! convertible into a [`BoxError`], in one of two shapes ([`EventHandler`]):
//!
//! - `async fn(WebhookEvent) -> Result<(), E>`;
//! - `async fn(WebhookEvent, Attempt) -> Result<(), E>` (feature `inbox`): behind the inbox's
//!   `Worker`, the attempt being made, with its idempotency key (`Attempt::key`) and fencing
//!   token (`Attempt::fencing_token`) for the handler's side effects.
//!
//! # Answers
//! The router answers every request itself, with a small JSON body `{"code","message"}`:
//!
//! | outcome | status | `code` |
//! |---|---|---|
//! | the handler returned `Ok` | 200 | `handled` |
//! | the handler returned `Err` | 500 | `handler_failed` |
//! | no handler for the kind and no [fallback](EventRouter::fallback) | 200 | `no_handler` |
//! | no [`WebhookEvent`] in the request: the layer does not wrap the router | 500 | `periskope_layer_missing` |
//! | a handler that takes the inbox's `Attempt`, outside the inbox's worker | 500 | `inbox_attempt_missing` |
//!
//! A handler's error never reaches the response body (it may hold anything the application
//! knows); it is in the response's extensions as a [`HandlerError`] for an outer layer to log,
//! and logged at `error` level with the `tracing` feature, its phone numbers masked by
//! [`mask_phone_digits`](crate::redact::mask_phone_digits). Periskope retries a delivery that
//! is not answered `2xx`, which is what a failed handler wants.
//!
//! An event with no handler is answered `200 no_handler` on purpose: a retry would meet the
//! same router and find no handler again, so retrying would only repeat the delivery, and
//! an error status would make the endpoint look broken for events it simply ignores. To not
//! receive them at all, unsubscribe them in Periskope; to keep them from the router, use the
//! layer's [`filter_events`](crate::PeriskopeWebhookLayer::filter_events).
//!
//! # Cost
//! Handlers are stored type-erased: each dispatch makes one dynamic call and boxes the
//! handler's future (one allocation, tens of nanoseconds, next to a network round trip and a
//! JSON decode). The routing table is behind an [`Arc`], so cloning the router, as servers do
//! per connection, copies a pointer. For a single handler with no allocation at all, take the
//! [`WebhookEvent`] from the request extensions in your own service.
//!
//! A panicking handler is not caught here; wrap the stack in tower-http's `CatchPanic` if a
//! panic should become a `500`.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Extensions, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use crate::event::{EventKind, Family, WebhookEvent};
#[cfg(feature = "inbox")]
use crate::inbox::Attempt;
use crate::response::{BoxError, LAYER_MISSING_CODE, LAYER_MISSING_MESSAGE, json_answer};

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A handler with its shape, future and error types erased: it takes what it needs besides the
/// event from the request's extensions, or says which is missing.
type Handler = Arc<dyn Fn(WebhookEvent, &mut Extensions) -> Result<BoxFuture, Misconfigured> + Send + Sync>;

/// A part of the request a handler takes is missing: an error of the setup, which a retry would
/// meet again, answered 500 with this code and message.
struct Misconfigured {
    code: &'static str,
    message: &'static str,
}

mod sealed {
    /// An [`EventHandler`](super::EventHandler) made ready for the routing table. Public in a
    /// private module, so that the crate alone implements `EventHandler`, and can add shapes.
    pub struct Erased(pub(super) super::Handler);
}

/// An async function [`EventRouter`] can call: `Fn(WebhookEvent) -> impl Future<Output =
/// Result<(), E>>`, or, with the `inbox` feature, `Fn(WebhookEvent, Attempt) -> ...`, with `E:
/// Into<BoxError>` (see the [module docs](self#handlers)).
///
/// It is implemented for every function and closure of those shapes; `Args` only tells the
/// shapes apart, as the extractor tuples of axum's `Handler` do. Write a closure's argument
/// types (`|event: WebhookEvent| ...`) so that its shape is known.
pub trait EventHandler<Args>: Send + Sync + 'static {
    /// The handler, type-erased for the routing table.
    #[doc(hidden)]
    fn erase(self) -> sealed::Erased;
}

impl<F, Fut, E> EventHandler<(WebhookEvent,)> for F
where
    F: Fn(WebhookEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn erase(self) -> sealed::Erased {
        sealed::Erased(Arc::new(move |event, _extensions| Ok(boxed(self(event)))))
    }
}

/// Behind the inbox's worker, which puts the [`Attempt`] into the request's extensions.
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
impl<F, Fut, E> EventHandler<(WebhookEvent, Attempt)> for F
where
    F: Fn(WebhookEvent, Attempt) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn erase(self) -> sealed::Erased {
        sealed::Erased(Arc::new(move |event, extensions| match extensions.remove::<Attempt>() {
            Some(attempt) => Ok(boxed(self(event, attempt))),
            // Served by the layer directly, the router has no attempt to give.
            None => Err(Misconfigured {
                code: "inbox_attempt_missing",
                message: "server misconfiguration: this handler takes the inbox's Attempt, so it runs behind the inbox's worker only",
            }),
        }))
    }
}

fn boxed<Fut, E>(future: Fut) -> BoxFuture
where
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    Box::pin(async move { future.await.map_err(Into::into) })
}

/// One slot per known kind, and one for [`EventKind::Unknown`].
const SLOTS: usize = EventKind::ALL.len() + 1;

#[derive(Clone)]
struct Routes {
    /// Indexed by `EventKind as usize`: the enum is this crate's, so the cast is its position.
    handlers: [Option<Handler>; SLOTS],
    fallback: Option<Handler>,
}

impl Routes {
    fn handler(&self, kind: EventKind) -> Option<&Handler> {
        self.handlers.get(kind as usize).and_then(Option::as_ref).or(self.fallback.as_ref())
    }
}

/// A tower [`Service`] that dispatches each verified event to the handler for its kind.
///
/// It reads the [`WebhookEvent`] that [`PeriskopeWebhookLayer`](crate::PeriskopeWebhookLayer)
/// put into the request extensions, so it goes inside that layer; the request body is not read.
/// A handler is an async function taking the [`WebhookEvent`] (and, behind the inbox's worker,
/// its `Attempt`: [`EventHandler`]) and returning `Result<(), E>` with `E` convertible into a
/// [`BoxError`]. See the [module docs](self) for the answers and their statuses.
///
/// Handlers for a known kind also receive that kind's
/// [undecodable](crate::EventData::Undecodable) deliveries (data that does not fit its type),
/// unless the layer is [strict](crate::PeriskopeWebhookLayer::strict): read the object through
/// the `Option` accessors such as [`Event::ticket`](crate::Event::ticket).
///
/// Cloning is cheap (the routes are shared), and the service is always ready.
#[derive(Clone)]
pub struct EventRouter {
    routes: Arc<Routes>,
}

impl EventRouter {
    /// A router with no handlers: every event is answered `200 no_handler`.
    pub fn new() -> Self {
        EventRouter { routes: Arc::new(Routes { handlers: std::array::from_fn(|_| None), fallback: None }) }
    }

    /// Handles events of `kind` with `handler`, replacing any handler set before for `kind`.
    ///
    /// With [`EventKind::Unknown`] this is [`on_unknown`](Self::on_unknown).
    pub fn on<H, Args>(mut self, kind: EventKind, handler: H) -> Self
    where
        H: EventHandler<Args>,
    {
        let sealed::Erased(handler) = handler.erase();
        // Every kind has a slot; `get_mut` keeps that an invariant rather than a panic site.
        if let Some(slot) = Arc::make_mut(&mut self.routes).handlers.get_mut(kind as usize) {
            *slot = Some(handler);
        }
        self
    }

    /// Handles events whose name this version of the crate does not know
    /// ([`EventKind::Unknown`]; [`WebhookEvent::name`] has the name as sent).
    pub fn on_unknown<H, Args>(self, handler: H) -> Self
    where
        H: EventHandler<Args>,
    {
        self.on(EventKind::Unknown, handler)
    }

    /// Handles every event that has no handler of its own, unknown ones included when there is
    /// no [`on_unknown`](Self::on_unknown) handler. Without it, such events are answered
    /// `200 no_handler`.
    pub fn fallback<H, Args>(mut self, handler: H) -> Self
    where
        H: EventHandler<Args>,
    {
        let sealed::Erased(handler) = handler.erase();
        Arc::make_mut(&mut self.routes).fallback = Some(handler);
        self
    }

    /// Handles every event of `family` (e.g. all `message.*` events) with `handler`, replacing
    /// any handler set before for those kinds; the kinds are [`Family::kinds`].
    pub fn on_family<H, Args>(mut self, family: Family, handler: H) -> Self
    where
        H: EventHandler<Args>,
    {
        let sealed::Erased(handler) = handler.erase();
        let routes = Arc::make_mut(&mut self.routes);
        for kind in family.kinds() {
            if let Some(slot) = routes.handlers.get_mut(kind as usize) {
                *slot = Some(Arc::clone(&handler));
            }
        }
        self
    }

    /// Whether an event of `kind` reaches a handler (its own or the fallback).
    pub fn handles(&self, kind: EventKind) -> bool {
        self.routes.handler(kind).is_some()
    }
}

macro_rules! on_kind {
    ($( $method:ident => $kind:ident, )*) => {
        /// A kind without a method here fails to compile.
        const _: fn(EventKind) = |kind| match kind {
            $( EventKind::$kind )|* | EventKind::Unknown => {}
        };

        impl EventRouter {
            $(
                #[doc = concat!(
                    "Handles [`EventKind::", stringify!($kind), "`] events: [`on`](Self::on)`(EventKind::",
                    stringify!($kind), ", handler)`."
                )]
                pub fn $method<H, Args>(self, handler: H) -> Self
                where
                    H: EventHandler<Args>,
                {
                    self.on(EventKind::$kind, handler)
                }
            )*
        }
    };
}

on_kind! {
    on_chat_created => ChatCreated,
    on_chat_notification_created => ChatNotificationCreated,
    on_chat_custom_properties_updated => ChatCustomPropertiesUpdated,
    on_message_created => MessageCreated,
    on_message_updated => MessageUpdated,
    on_message_deleted => MessageDeleted,
    on_message_ack_updated => MessageAckUpdated,
    on_message_flagged => MessageFlagged,
    on_message_unflagged => MessageUnflagged,
    on_message_ticket_attached => MessageTicketAttached,
    on_reaction_created => ReactionCreated,
    on_reaction_updated => ReactionUpdated,
    on_ticket_created => TicketCreated,
    on_ticket_updated => TicketUpdated,
    on_ticket_deleted => TicketDeleted,
    on_note_created => NoteCreated,
    on_org_phone_connected => OrgPhoneConnected,
    on_org_phone_disconnected => OrgPhoneDisconnected,
    on_org_phone_updated => OrgPhoneUpdated,
    on_org_phone_qr => OrgPhoneQr,
}

impl Default for EventRouter {
    fn default() -> Self {
        EventRouter::new()
    }
}

impl fmt::Debug for EventRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = EventKind::ALL.into_iter().chain([EventKind::Unknown]);
        let handled: Vec<EventKind> = kinds
            .filter(|kind| self.routes.handlers.get(*kind as usize).is_some_and(Option::is_some))
            .collect();
        f.debug_struct("EventRouter")
            .field("handlers", &handled)
            .field("fallback", &self.routes.fallback.is_some())
            .finish()
    }
}

impl<B> Service<Request<B>> for EventRouter {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = RouteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The request is dropped here, so the event can be moved out rather than cloned.
        let Some(event) = request.extensions_mut().remove::<WebhookEvent>() else {
            return RouteFuture::ready(json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                LAYER_MISSING_CODE,
                LAYER_MISSING_MESSAGE,
            ));
        };
        let kind = event.kind();
        match self.routes.handler(kind) {
            Some(handler) => match handler(event, request.extensions_mut()) {
                Ok(future) => RouteFuture { state: RouteState::Running { future, kind } },
                Err(missing) => RouteFuture::ready(json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    missing.code,
                    missing.message,
                )),
            },
            None => RouteFuture::ready(json_answer(
                StatusCode::OK,
                "no_handler",
                &format!("no handler for {kind} here; a retry would not find one either"),
            )),
        }
    }
}

/// The response future of [`EventRouter`].
///
/// Polling it again after it has completed returns [`Poll::Pending`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct RouteFuture {
    state: RouteState,
}

enum RouteState {
    Running { future: BoxFuture, kind: EventKind },
    Ready { response: Option<Response<Full<Bytes>>> },
}

impl RouteFuture {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        RouteFuture { state: RouteState::Ready { response: Some(response) } }
    }
}

impl fmt::Debug for RouteFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            RouteState::Running { kind, .. } => format!("running the {kind} handler"),
            RouteState::Ready { response: Some(_) } => "ready".to_owned(),
            RouteState::Ready { response: None } => "done".to_owned(),
        };
        f.debug_struct("RouteFuture").field("state", &state).finish()
    }
}

impl Future for RouteFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.state {
            RouteState::Ready { response } => match response.take() {
                Some(response) => response,
                // Like a fused future, rather than a panic.
                None => return Poll::Pending,
            },
            RouteState::Running { future, kind } => match future.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => json_answer(StatusCode::OK, "handled", "the event was handled"),
                Poll::Ready(Err(error)) => failed(*kind, error),
            },
        };
        self.state = RouteState::Ready { response: None };
        Poll::Ready(Ok(response))
    }
}

fn failed(kind: EventKind, error: BoxError) -> Response<Full<Bytes>> {
    // The text can quote what the handler saw, phone numbers included (`CRM refused contact
    // 919...@c.us`): logged with them masked, as ids are.
    #[cfg(feature = "tracing")]
    tracing::error!(
        event = kind.as_str(),
        error = %crate::redact::mask_phone_digits(&error.to_string()),
        "periskope event handler failed"
    );
    // The text stays server-side: it may hold anything the application knows.
    let mut response = json_answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "handler_failed",
        &format!("the {kind} handler failed; retry later"),
    );
    response.extensions_mut().insert(HandlerError { kind, error: Arc::from(error) });
    response
}

/// A handler's error, in the extensions of the `500 handler_failed` response, so an outer
/// layer can log it; the response body never carries it.
#[derive(Clone)]
pub struct HandlerError {
    kind: EventKind,
    error: Arc<dyn Error + Send + Sync>,
}

impl HandlerError {
    /// The kind of the event whose handler failed.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The error the handler returned.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError").field("kind", &self.kind).field("error", &self.error).finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cause is reported through `source`, so that it is not printed twice.
        write!(f, "the {} handler failed", self.kind)
    }
}

impl Error for HandlerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.error)
    }
}
