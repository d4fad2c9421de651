//! [`Event`]: a whole delivery (the envelope and its typed `data`), and how it is decoded.
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

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{
    Chat, ChatNotification, DataError, DecodeError, EventKind, Family, Message, Note, Phone, RawJson,
    Reaction, Str, TicketInfo, Timestamp,
};

/// A decoded Periskope delivery: the envelope and its `data`.
///
/// Borrows its strings from the body it was decoded from; [`crate::event::WebhookEvent`] keeps
/// the body and the event together as one owned, cheaply cloned value.
#[derive(Clone, Debug, PartialEq, yoke::Yokeable)]
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
        fn decode_members<'de, A: MapAccess<'de>>(kind: EventKind, members: A) -> Result<EventData<'de>, A::Error> {
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

    /// Decodes a delivery body, borrowing strings from it.
    ///
    /// For a known event whose `data` comes after its name (as Periskope writes it), this is
    /// one pass over the text with no intermediate tree. A body whose `data` comes first, or
    /// whose `data` does not fit its type, takes a second, slower pass; neither is lost.
    pub fn from_json(text: &'a str) -> Result<Self, DecodeError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let fast = deserializer.deserialize_map(EnvelopeVisitor).and_then(|event| {
            deserializer.end()?;
            Ok(event)
        });
        fast.or_else(|_| decode_slowly(text))
    }

    /// Decodes a delivery body given as bytes: checks UTF-8 once, then [`Event::from_json`].
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|error| DecodeError::InvalidUtf8 { valid_up_to: error.valid_up_to() })?;
        Event::from_json(text)
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

/// The one-pass decoder. Anything unusual (a repeated key, `event` and `event_type` naming
/// different kinds after `data` was typed, `data` not fitting) fails it, and
/// [`decode_slowly`] then decides with the raw `data` in hand.
struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Event<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Periskope delivery object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event: Option<Option<Str<'de>>> = None;
        let mut event_type: Option<Option<Str<'de>>> = None;
        // `data` is typed as it is read when the name came first, kept raw otherwise.
        let mut typed: Option<EventData<'de>> = None;
        let mut raw: Option<&'de RawValue> = None;
        let mut org_id: Option<Option<Str<'de>>> = None;
        let mut timestamp: Option<Option<Timestamp<'de>>> = None;
        let mut previous: Option<Option<RawJson<'de>>> = None;

        while let Some(key) = map.next_key::<Str<'de>>()? {
            match key.as_str() {
                "event" => set_once(&mut event, map.next_value()?, "event")?,
                "event_type" => set_once(&mut event_type, map.next_value()?, "event_type")?,
                "data" => {
                    if typed.is_some() || raw.is_some() {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    let kind = name_of(&event, &event_type).map_or(EventKind::Unknown, EventKind::from_name);
                    if kind.is_known() {
                        typed = Some(map.next_value_seed(DataSeed(kind))?);
                    } else {
                        raw = Some(map.next_value()?);
                    }
                }
                "org_id" => set_once(&mut org_id, map.next_value()?, "org_id")?,
                "timestamp" => set_once(&mut timestamp, map.next_value()?, "timestamp")?,
                "previous_attributes" => set_once(&mut previous, map.next_value()?, "previous_attributes")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }

        let name =
            event.flatten().or(event_type.flatten()).ok_or_else(|| de::Error::missing_field("event"))?;
        let kind = EventKind::from_name(&name);
        let data = match typed {
            Some(typed) if typed.kind() == kind => typed,
            Some(_) => return Err(de::Error::custom("`event` and `event_type` disagree")),
            None => data_from_raw(kind, name, raw),
        };
        Ok(Event {
            data,
            org_id: org_id.flatten(),
            timestamp: timestamp.flatten(),
            previous_attributes: previous.flatten().filter(|raw| !raw.is_null()),
        })
    }
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

/// The name that decides the kind: `event` when present, else `event_type`.
fn name_of<'s>(
    event: &'s Option<Option<Str<'_>>>,
    event_type: &'s Option<Option<Str<'_>>>,
) -> Option<&'s str> {
    match (event, event_type) {
        (Some(Some(name)), _) => Some(name),
        (_, Some(Some(name))) => Some(name),
        _ => None,
    }
}

struct DataSeed(EventKind);

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = EventData<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        decode_typed(self.0, deserializer)
    }
}

/// Decodes `data` as the object of `kind`, which must be known.
///
/// Derived struct decoders also accept a JSON array, filling fields in order; `data` that is
/// an array does not fit any event, so only an object is read.
pub(crate) fn decode_typed<'de, D: Deserializer<'de>>(
    kind: EventKind,
    deserializer: D,
) -> Result<EventData<'de>, D::Error> {
    deserializer.deserialize_map(ObjectVisitor(kind))
}

struct ObjectVisitor(EventKind);

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = EventData<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object for {}", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, members: A) -> Result<Self::Value, A::Error> {
        decode_members(self.0, members)
    }
}

/// Types `data` given as raw JSON; a misfit becomes [`EventData::Undecodable`] with its path.
fn data_from_raw<'a>(kind: EventKind, name: Str<'a>, raw: Option<&'a RawValue>) -> EventData<'a> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return if kind.is_known() {
            EventData::Undecodable { kind, data: RawJson::NULL, error: DataError::missing() }
        } else {
            EventData::Unknown { name, data: RawJson::NULL }
        };
    };
    if !kind.is_known() {
        return EventData::Unknown { name, data: RawJson::borrowed(raw) };
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let typed = decode_typed(kind, &mut deserializer).and_then(|typed| deserializer.end().map(|()| typed));
    typed.unwrap_or_else(|_| {
        // Only a misfit pays for the second pass that tracks the path.
        let mut deserializer = serde_json::Deserializer::from_str(raw.get());
        let mut track = serde_path_to_error::Track::new();
        let error =
            match decode_typed(kind, serde_path_to_error::Deserializer::new(&mut deserializer, &mut track)) {
                Err(error) => DataError::new(&track.path(), &error),
                Ok(_) => DataError::trailing(),
            };
        EventData::Undecodable { kind, data: RawJson::borrowed(raw), error }
    })
}

/// The envelope with `data` left raw: the authority when the one-pass decoder gave up.
#[derive(Deserialize)]
pub(crate) struct RawEnvelope<'a> {
    #[serde(borrow)]
    event: Option<Str<'a>>,
    #[serde(borrow)]
    event_type: Option<Str<'a>>,
    #[serde(borrow)]
    pub(crate) data: Option<&'a RawValue>,
    #[serde(borrow)]
    org_id: Option<Str<'a>>,
    #[serde(borrow)]
    timestamp: Option<Timestamp<'a>>,
    #[serde(borrow)]
    previous_attributes: Option<RawJson<'a>>,
}

fn decode_slowly(text: &str) -> Result<Event<'_>, DecodeError> {
    // Derived decoders also read arrays by position; an envelope is an object or nothing.
    if !text.trim_start_matches(JSON_WHITESPACE).starts_with('{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => DecodeError::NotAnObject,
            Err(error) => DecodeError::Malformed { line: error.line(), column: error.column() },
        });
    }
    let envelope: RawEnvelope<'_> = serde_json::from_str(text).map_err(|error| classify(text, &error))?;
    let name = envelope.event.or(envelope.event_type).ok_or(DecodeError::MissingEventName)?;
    let kind = EventKind::from_name(&name);
    Ok(Event {
        data: data_from_raw(kind, name, envelope.data),
        org_id: envelope.org_id,
        timestamp: envelope.timestamp,
        previous_attributes: envelope.previous_attributes.filter(|raw| !raw.is_null()),
    })
}

const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// Why an object failed the envelope: its syntax, or a field's type, value or repetition.
///
/// serde_json reports a number too large for its field, or a lone UTF-16 surrogate, as a
/// syntax error although the text is valid JSON; skipping the text without converting values
/// tells the two apart (only on this failure path).
fn classify(text: &str, error: &serde_json::Error) -> DecodeError {
    let (line, column) = (error.line(), error.column());
    let valid_json = || serde_json::from_str::<IgnoredAny>(text).is_ok();
    match error.classify() {
        serde_json::error::Category::Data => DecodeError::InvalidEnvelope { line, column },
        _ if valid_json() => DecodeError::InvalidEnvelope { line, column },
        _ => DecodeError::Malformed { line, column },
    }
}
