//! [`Event::previous`]: what an update changed, typed as the event's own object.
//!
//! ```
//! use periskope_webhook::event::{Ack, Event, TicketStatus};
//!
//! // "ack went from 2 to 4"
//! let event = Event::from_json(r#"{"event":"message.ack.updated","data":{"ack":4},
//!                                  "previous_attributes":{"ack":"2"}}"#).unwrap();
//! let previous = event.previous().unwrap().unwrap();
//! assert_eq!(previous.message().and_then(|message| message.ack), Some(Ack::Delivered));
//! assert_eq!(event.message().and_then(|message| message.ack), Some(Ack::Read));
//!
//! let event = Event::from_json(r#"{"event":"ticket.updated","data":{"ticket":{"status":"closed"}},
//!                                  "previous_attributes":{"status":"open"}}"#).unwrap();
//! let previous = event.previous().unwrap().unwrap();
//! let ticket = previous.ticket().and_then(|info| info.ticket.as_ref());
//! assert_eq!(ticket.and_then(|ticket| ticket.status.as_ref()), Some(&TicketStatus::Open));
//! ```
//!
//! Periskope's guide says only that update events carry "attributes changes in new object":
//! the changed fields, as they were before. They are decoded on demand from
//! [`Event::previous_attributes`], which keeps the JSON exactly as sent, so the decode of a
//! delivery costs nothing more.
//!
//! In the typed view every field is an `Option`, so a field that was `null` before and a field
//! that did not change both read `None`; read [`Event::previous_attributes`] to tell them apart.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};

use super::envelope::decode_members;
use super::{Event, EventData, EventKind, ObjectRef, TicketInfo};

/// The attributes an update changed, as they were before it, typed as the event's own object
/// (a partial one: only the fields that changed are set).
#[derive(Clone, Debug, PartialEq)]
pub struct Previous<'a> {
    data: EventData<'a>,
    /// For `ticket.*` attributes that are the ticket's own fields: them, as the info's ticket.
    flat_ticket: Option<TicketInfo<'a>>,
}

impl<'a> Previous<'a> {
    /// The typed partial object, whatever its family.
    pub fn object(&self) -> Option<ObjectRef<'_, 'a>> {
        match &self.flat_ticket {
            Some(info) => Some(ObjectRef::Ticket(info)),
            None => self.data.object(),
        }
    }

    /// The message's previous attributes, for `message.*` events.
    pub fn message(&self) -> Option<&super::Message<'a>> {
        match self.object()? {
            ObjectRef::Message(message) => Some(message),
            _ => None,
        }
    }

    /// The ticket's previous attributes, for `ticket.*` events: in
    /// [`TicketInfo::ticket`] whether Periskope sent the ticket's own fields or nested them
    /// under `ticket`.
    pub fn ticket(&self) -> Option<&TicketInfo<'a>> {
        match self.object()? {
            ObjectRef::Ticket(info) => Some(info),
            _ => None,
        }
    }

    /// The chat's previous attributes, for `chat.*` events other than notifications.
    pub fn chat(&self) -> Option<&super::Chat<'a>> {
        match self.object()? {
            ObjectRef::Chat(chat) => Some(chat),
            _ => None,
        }
    }

    /// The reaction's previous attributes, for `reaction.*` events.
    pub fn reaction(&self) -> Option<&super::Reaction<'a>> {
        match self.object()? {
            ObjectRef::Reaction(reaction) => Some(reaction),
            _ => None,
        }
    }

    /// The phone's previous attributes, for `org.phone.*` events.
    pub fn phone(&self) -> Option<&super::Phone<'a>> {
        match self.object()? {
            ObjectRef::Phone(phone) => Some(phone),
            _ => None,
        }
    }
}

impl<'a> Event<'a> {
    /// [`previous_attributes`](Event::previous_attributes) typed as this event's object: `None`
    /// when the delivery has none or its kind is unknown, an error when they do not fit the
    /// object's type (the raw JSON stays in `previous_attributes`).
    ///
    /// For `ticket.*` events the attributes may be the ticket's own fields or nest them under
    /// `ticket` (Periskope does not say which): both read as [`TicketInfo::ticket`].
    ///
    /// A field absent from the attributes and a field that was `null` both read `None` here.
    pub fn previous(&self) -> Option<Result<Previous<'_>, serde_json::Error>> {
        let raw = self.previous_attributes.as_ref()?;
        let kind = self.kind();
        kind.family()?;
        let text = raw.get();
        Some(decode(kind, text).and_then(|data| {
            let flat_ticket = match data.object() {
                // No `ticket` inside: the attributes are the ticket's own fields.
                Some(ObjectRef::Ticket(info)) if info.ticket.is_none() => {
                    Some(TicketInfo { ticket: Some(serde_json::from_str(text)?), ..info.clone() })
                }
                _ => None,
            };
            Ok(Previous { data, flat_ticket })
        }))
    }
}

/// Decodes `text`, a JSON object, as the object of `kind` (a known kind).
fn decode(kind: EventKind, text: &str) -> Result<EventData<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let data = deserializer.deserialize_map(ObjectOf(kind))?;
    deserializer.end()?;
    Ok(data)
}

/// Reads only a JSON object (derived decoders would also read an array by position).
struct ObjectOf(EventKind);

impl<'de> Visitor<'de> for ObjectOf {
    type Value = EventData<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the previous attributes of {} as a JSON object", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, members: A) -> Result<Self::Value, A::Error> {
        decode_members(self.0, members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TicketStatus;

    fn previous_status(body: &str) -> Option<TicketStatus> {
        let event = Event::from_json(body).unwrap();
        let previous = event.previous().expect("attributes").expect("typed");
        previous.ticket().and_then(|info| info.ticket.as_ref()).and_then(|ticket| ticket.status.clone())
    }

    #[test]
    fn ticket_attributes_flat_or_nested_read_the_same() {
        let flat =
            r#"{"event":"ticket.updated","data":{},"previous_attributes":{"status":"open","priority":"1"}}"#;
        let nested =
            r#"{"event":"ticket.updated","data":{},"previous_attributes":{"ticket":{"status":"open"}}}"#;
        assert_eq!(previous_status(flat), Some(TicketStatus::Open));
        assert_eq!(previous_status(nested), Some(TicketStatus::Open));
        let event = Event::from_json(flat).unwrap();
        let previous = event.previous().unwrap().unwrap();
        assert_eq!(previous.ticket().and_then(|info| info.ticket.as_ref()).and_then(|t| t.priority), Some(1));
    }

    #[test]
    fn quirks_are_tolerated_and_the_raw_json_kept() {
        // `ack` as a string, a number kept as text, an unknown field ignored.
        let body = r#"{"event":"message.updated","data":{"body":"new"},
                       "previous_attributes":{"body":"old","ack":"1","new_field":{"x":1}}}"#;
        let event = Event::from_json(body).unwrap();
        let previous = event.previous().unwrap().unwrap();
        let message = previous.message().unwrap();
        assert_eq!(message.body.as_deref(), Some("old"));
        assert_eq!(message.ack.map(|ack| ack.code()), Some(1));
        assert!(event.previous_attributes.as_ref().unwrap().get().contains("new_field"));
    }

    #[test]
    fn absent_unknown_and_misfit_attributes() {
        let none = Event::from_json(r#"{"event":"message.updated","data":{}}"#).unwrap();
        assert!(none.previous().is_none());
        let unknown =
            Event::from_json(r#"{"event":"chat.label.updated","data":{},"previous_attributes":{"a":1}}"#)
                .unwrap();
        assert!(unknown.previous().is_none());
        let misfit =
            Event::from_json(r#"{"event":"message.updated","data":{},"previous_attributes":[1,2]}"#).unwrap();
        assert!(misfit.previous().unwrap().is_err());
        let wrong_type = Event::from_json(
            r#"{"event":"message.updated","data":{},"previous_attributes":{"body":{"x":1}}}"#,
        )
        .unwrap();
        assert!(wrong_type.previous().unwrap().is_err());
        // The delivery itself decoded either way, with the attributes as sent.
        assert_eq!(wrong_type.previous_attributes.unwrap().get(), r#"{"body":{"x":1}}"#);
    }
}
