//! The typed Periskope event model: decode every real delivery, tolerate every quirk, lose
//! nothing.
//!
//! ```
//! use periskope_webhook::event::{Ack, Event, EventKind};
//!
//! let body = br#"{"event":"message.ack.updated","data":{"message_id":"true_1@c.us_3EB0","ack":"4"},
//!                 "previous_attributes":{"ack":"3"},"timestamp":"2025-01-20T07:51:48.209+00:00"}"#;
//! let event = Event::from_slice(body).unwrap();
//! assert_eq!(event.kind(), EventKind::MessageAckUpdated);
//! assert_eq!(event.message().unwrap().ack, Some(Ack::Read));
//! assert_eq!(event.previous_attributes.unwrap().get(), r#"{"ack":"3"}"#);
//! ```
//!
//! # Shape
//! - [`Event`]: the envelope (`org_id`, `timestamp`, `previous_attributes`) and [`EventData`],
//!   one arm per event name, holding [`Message`], [`Reaction`], [`Chat`], [`ChatNotification`],
//!   [`Note`], [`TicketInfo`] or [`Phone`].
//! - [`WebhookEvent`]: an [`Event`] together with the body it borrows from; what the middleware
//!   puts into request extensions.
//!
//! # Quirks handled
//! - The name in `event` or `event_type` (`event` wins when both are present), before or after
//!   `data`.
//! - Numbers as strings or numbers (`ack`, `orphan`, `forwarding_score`, `duration`, ticket
//!   `priority`), via `deserialize_with` helpers and [`Ack`].
//! - `links` as an array or a string holding one ([`Links`]).
//! - [`WaId`] key aliases: `fromMe`/`from_me`, `_serialized`/`serialized`.
//! - [`Timestamp`]: any of the formats Periskope mixes, kept as sent and parsed on demand.
//! - Open enums ([`MessageType`], [`ChatType`], [`TicketStatus`], [`WaState`],
//!   [`NotificationType`], [`Ack`]) keep unknown values in an `Other` arm.
//! - Every field is optional and unknown fields are ignored.
//! - An unknown event name gives [`EventData::Unknown`] with the name and raw data; a known
//!   name whose data does not fit gives [`EventData::Undecodable`] with the raw data and a
//!   [`DataError`] (JSON path and reason).

mod chat;
mod decode;
mod envelope;
mod error;
mod ids;
mod kind;
mod list;
mod map;
mod message;
mod note;
mod notification;
mod number;
mod object;
pub(crate) mod open_enum;
mod owned;
mod phone;
mod previous;
mod raw;
mod reaction;
mod text;
mod ticket;
mod time_crates;
mod timestamp;

pub use chat::{Chat, ChatMember, ChatType};
pub(crate) use decode::ignored_fields;
pub use envelope::{Event, EventData, ObjectRef};
pub(crate) use error::is_identifier;
pub use error::{DataError, DecodeError};
pub use ids::WaId;
pub use kind::{EventKind, Family};
pub use map::Map;
pub use message::{
    Ack, DeliveryInfo, Dimensions, FlagMetadata, Links, Media, Message, MessageType, PollInfo, PollOptions,
};
pub use note::Note;
pub use notification::{ChatNotification, NotificationType};
pub use owned::WebhookEvent;
pub use phone::{Phone, WaState};
pub use previous::Previous;
pub use raw::RawJson;
pub use reaction::Reaction;
pub use text::Str;
pub use ticket::{Ticket, TicketInfo, TicketMessage, TicketStatus};
#[cfg(feature = "console")]
pub(crate) use timestamp::format_utc;
pub use timestamp::{DateTime, Timestamp};
