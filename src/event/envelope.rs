//! [`Event`]: a whole delivery (the envelope and its typed `data`); `decode.rs` reads it.
//!
//! ```
//! use periskope_webhook::event::{Event, EventData, EventKind};
//!
//! let body = r#"{"event":"reaction.created","data":{"reaction":"👍","ack":"0"},
//!                "org_id":"2997dd64","timestamp":"2025-01-20T07:51:48.209+00:00"}"#;
//! let event = Event::from_json(body).unwrap();
//! assert_eq!(event.kind(), EventKind::ReactionCreated);
//! let EventData::ReactionCreated(reaction) = &event.data else { panic!("typed") };
//! assert_eq!(reaction.reaction.as_deref(), Some("👍"));
//!
//! // A name the crate does not know keeps the name and the raw data.
//! let event = Event::from_json(r#"{"event":"chat.label.updated","data":{"x":1}}"#).unwrap();
//! assert_eq!(event.kind(), EventKind::Unknown);
//! assert_eq!(event.name(), "chat.label.updated");
//! assert_eq!(event.raw_data().unwrap().get(), r#"{"x":1}"#);
//! ```

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::{
    Chat, ChatNotification, DataError, EventKind, Family, Message, Note, Phone, RawJson, Reaction, Str,
    TicketInfo, Timestamp,
};

/// A decoded Periskope delivery: the envelope and its `data`.
///
/// Borrows its strings from the body it was decoded from; [`crate::event::WebhookEvent`] keeps
/// the body and the event together as one owned, cheaply cloned value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The `data` object, typed by the event name.
    pub data: EventData<'a>,
    /// The envelope's `org_id`.
    pub org_id: Option<Str<'a>>,
    /// The envelope's `timestamp`, the event's creation time (format undocumented).
    pub timestamp: Option<Timestamp<'a>>,
    /// The attributes an update changed, as they were before it; kept verbatim.
    /// `None` when absent or `null`.
    pub previous_attributes: Option<RawJson<'a>>,
}

macro_rules! event_data {
    ($( $(#[$doc:meta])* $variant:ident($ty:ident), )*) => {
        /// The `data` of a delivery, one arm per event name.
        ///
        /// Arms that share an object type (all `message.*` carry a [`Message`]) can be matched
        /// together: `EventData::MessageCreated(m) | EventData::MessageUpdated(m) => ...`, or
        /// read through [`Event::message`] and its siblings.
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum EventData<'a> {
            $( $(#[$doc])* $variant(Box<$ty<'a>>), )*
            /// An event name this crate does not know, with its `data` as sent.
            Unknown {
                /// The event name as sent.
                name: Str<'a>,
                /// The `data` value as sent (`null` when absent).
                data: RawJson<'a>,
            },
            /// A known event whose `data` does not fit its type. Nothing is lost: the raw
            /// `data` is here, with where and why it failed.
            Undecodable {
                /// The event's kind.
                kind: EventKind,
                /// The `data` value as sent (`null` when absent).
                data: RawJson<'a>,
                /// Where and why decoding failed.
                error: DataError,
            },
        }

        impl<'a> EventData<'a> {
            /// The kind of event this data belongs to.
            pub fn kind(&self) -> EventKind {
                match self {
                    $( EventData::$variant(_) => EventKind::$variant, )*
                    EventData::Unknown { .. } => EventKind::Unknown,
                    EventData::Undecodable { kind, .. } => *kind,
                }
            }

            /// The typed object, whatever the kind; `None` for unknown and undecodable events.
            pub fn object(&self) -> Option<ObjectRef<'_, 'a>> {
                match self {
                    $( EventData::$variant(object) => Some(ObjectRef::from(&**object)), )*
                    EventData::Unknown { .. } | EventData::Undecodable { .. } => None,
                }
            }
        }

        /// Decodes the members of a `data` object as the object of `kind`, which must be known.
        pub(super) fn decode_members<'de, A: MapAccess<'de>>(kind: EventKind, members: A) -> Result<EventData<'de>, A::Error> {
            let deserializer = MapAccessDeserializer::new(members);
            match kind {
                $( EventKind::$variant => $ty::deserialize(deserializer).map(|object| EventData::$variant(Box::new(object))), )*
                EventKind::Unknown => Err(de::Error::custom("no type for an unknown event")),
            }
        }

        impl Serialize for EventData<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( EventData::$variant(object) => object.serialize(serializer), )*
                    EventData::Unknown { data, .. } | EventData::Undecodable { data, .. } => data.serialize(serializer),
                }
            }
        }
    };
}

event_data! {
    /// `chat.created`.
    ChatCreated(Chat),
    /// `chat.notification.created`.
    ChatNotificationCreated(ChatNotification),
    /// `chat.custom_properties.updated`.
    ChatCustomPropertiesUpdated(Chat),
    /// `message.created`.
    MessageCreated(Message),
    /// `message.updated`.
    MessageUpdated(Message),
    /// `message.deleted`.
    MessageDeleted(Message),
    /// `message.ack.updated`.
    MessageAckUpdated(Message),
    /// `message.flagged`.
    MessageFlagged(Message),
    /// `message.unflagged`.
    MessageUnflagged(Message),
    /// `message.ticket.attached`.
    MessageTicketAttached(Message),
    /// `reaction.created`.
    ReactionCreated(Reaction),
    /// `reaction.updated`.
    ReactionUpdated(Reaction),
    /// `ticket.created`.
    TicketCreated(TicketInfo),
    /// `ticket.updated`.
    TicketUpdated(TicketInfo),
    /// `ticket.deleted`.
    TicketDeleted(TicketInfo),
    /// `note.created`.
    NoteCreated(Note),
    /// `org.phone.connected`.
    OrgPhoneConnected(Phone),
    /// `org.phone.disconnected`.
    OrgPhoneDisconnected(Phone),
    /// `org.phone.updated`.
    OrgPhoneUpdated(Phone),
    /// `org.phone.qr`.
    OrgPhoneQr(Phone),
}

/// The typed object of an event, one arm per [`Family`]: what [`EventData::object`] gives.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ObjectRef<'e, 'a> {
    /// [`Family::Chat`].
    Chat(&'e Chat<'a>),
    /// [`Family::ChatNotification`].
    ChatNotification(&'e ChatNotification<'a>),
    /// [`Family::Message`].
    Message(&'e Message<'a>),
    /// [`Family::Reaction`].
    Reaction(&'e Reaction<'a>),
    /// [`Family::Ticket`].
    Ticket(&'e TicketInfo<'a>),
    /// [`Family::Note`].
    Note(&'e Note<'a>),
    /// [`Family::Phone`].
    Phone(&'e Phone<'a>),
}

macro_rules! object_ref {
    ($( $family:ident($ty:ident), )*) => {
        $(
            impl<'e, 'a> From<&'e $ty<'a>> for ObjectRef<'e, 'a> {
                fn from(object: &'e $ty<'a>) -> Self {
                    ObjectRef::$family(object)
                }
            }
        )*

        impl ObjectRef<'_, '_> {
            /// The family this object's type belongs to.
            pub fn family(&self) -> Family {
                match self {
                    $( ObjectRef::$family(_) => Family::$family, )*
                }
            }
        }
    };
}

object_ref! {
    Chat(Chat),
    ChatNotification(ChatNotification),
    Message(Message),
    Reaction(Reaction),
    Ticket(TicketInfo),
    Note(Note),
    Phone(Phone),
}

impl<'a> Event<'a> {
    /// An event with this data and an empty envelope.
    pub fn new(data: EventData<'a>) -> Self {
        Event { data, org_id: None, timestamp: None, previous_attributes: None }
    }

    /// Sets the envelope's `org_id`.
    pub fn with_org_id(mut self, org_id: impl Into<Str<'a>>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    /// Sets the envelope's `timestamp`.
    pub fn with_timestamp(mut self, timestamp: impl Into<Timestamp<'a>>) -> Self {
        self.timestamp = Some(timestamp.into());
        self
    }

    /// Sets the envelope's `previous_attributes`.
    pub fn with_previous_attributes(mut self, previous: RawJson<'a>) -> Self {
        self.previous_attributes = Some(previous);
        self
    }

    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }

    /// The event name as sent (also for unknown events).
    pub fn name(&self) -> &str {
        match &self.data {
            EventData::Unknown { name, .. } => name,
            data => data.kind().as_str(),
        }
    }

    /// Whether `data` was decoded into its type (false for unknown and undecodable events).
    pub fn is_typed(&self) -> bool {
        !matches!(self.data, EventData::Unknown { .. } | EventData::Undecodable { .. })
    }

    /// Where and why `data` did not fit its type, for [`EventData::Undecodable`].
    pub fn data_error(&self) -> Option<&DataError> {
        match &self.data {
            EventData::Undecodable { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The raw `data` of an unknown or undecodable event. For a typed event, the body is kept
    /// by [`crate::event::WebhookEvent::raw_data`].
    pub fn raw_data(&self) -> Option<&RawJson<'a>> {
        match &self.data {
            EventData::Unknown { data, .. } | EventData::Undecodable { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The message of any `message.*` event.
    pub fn message(&self) -> Option<&Message<'a>> {
        match self.data.object()? {
            ObjectRef::Message(message) => Some(message),
            _ => None,
        }
    }

    /// The reaction of a `reaction.*` event.
    pub fn reaction(&self) -> Option<&Reaction<'a>> {
        match self.data.object()? {
            ObjectRef::Reaction(reaction) => Some(reaction),
            _ => None,
        }
    }

    /// The chat of `chat.created` or `chat.custom_properties.updated`.
    pub fn chat(&self) -> Option<&Chat<'a>> {
        match self.data.object()? {
            ObjectRef::Chat(chat) => Some(chat),
            _ => None,
        }
    }

    /// The notification of `chat.notification.created`.
    pub fn chat_notification(&self) -> Option<&ChatNotification<'a>> {
        match self.data.object()? {
            ObjectRef::ChatNotification(notification) => Some(notification),
            _ => None,
        }
    }

    /// The note of `note.created`.
    pub fn note(&self) -> Option<&Note<'a>> {
        match self.data.object()? {
            ObjectRef::Note(note) => Some(note),
            _ => None,
        }
    }

    /// The ticket info of a `ticket.*` event.
    pub fn ticket(&self) -> Option<&TicketInfo<'a>> {
        match self.data.object()? {
            ObjectRef::Ticket(info) => Some(info),
            _ => None,
        }
    }

    /// The phone of an `org.phone.*` event.
    pub fn phone(&self) -> Option<&Phone<'a>> {
        match self.data.object()? {
            ObjectRef::Phone(phone) => Some(phone),
            _ => None,
        }
    }
}

impl Serialize for Event<'_> {
    /// Writes the envelope as Periskope does: `event`, `data`, then the other fields present.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event", self.name())?;
        map.serialize_entry("data", &self.data)?;
        if let Some(org_id) = &self.org_id {
            map.serialize_entry("org_id", org_id)?;
        }
        if let Some(previous) = &self.previous_attributes {
            map.serialize_entry("previous_attributes", previous)?;
        }
        if let Some(timestamp) = &self.timestamp {
            map.serialize_entry("timestamp", timestamp)?;
        }
        map.end()
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::{Event, Message};

    /// An event is moved several times on its way out of the decoder: at 128 bytes or less the
    /// compiler moves it inline, beyond that each move is a `memcpy` call.
    #[test]
    fn an_event_moves_without_a_memcpy_call() {
        assert!(size_of::<Event<'_>>() <= 128, "Event is {} bytes", size_of::<Event<'_>>());
    }

    /// glibc serves blocks of up to 1,032 bytes from its per-thread cache; a message's rarely
    /// present parts are boxed to stay below.
    #[test]
    fn a_message_fits_the_allocators_small_block_cache() {
        assert!(size_of::<Message<'_>>() <= 1024, "Message is {} bytes", size_of::<Message<'_>>());
    }
}
