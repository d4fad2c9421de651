//! How a delivery body becomes an [`Event`]: one pass when the name comes before `data`, a raw
//! second pass for anything unusual, and the tracked pass that drift reporting uses.
//!
//! ```
//! use periskope_webhook::event::{DecodeError, Event, EventKind};
//!
//! // `data` first, named by `event_type`: still typed.
//! let event = Event::from_json(r#"{"data":{"body":"hi"},"event_type":"message.created"}"#).unwrap();
//! assert_eq!(event.kind(), EventKind::MessageCreated);
//! assert_eq!(event.message().unwrap().body.as_deref(), Some("hi"));
//!
//! // Not a delivery: a specific error, never a panic.
//! assert_eq!(Event::from_json("[1]"), Err(DecodeError::NotAnObject));
//! ```

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_ignored::Path;
use serde_json::value::RawValue;

use super::envelope::decode_members;
use super::{DataError, DecodeError, Event, EventData, EventKind, RawJson, Str, Timestamp};

impl<'a> Event<'a> {
    /// Decodes a delivery body, borrowing strings from it.
    ///
    /// For a known event this is one pass over the text with no intermediate tree, whether
    /// `data` comes after its name (as Periskope writes it) or before. A body whose `data` does
    /// not fit its type, or whose name is not where it was looked for, takes a second, slower
    /// pass; nothing is lost.
    pub fn from_json(text: &'a str) -> Result<Self, DecodeError> {
        match decode_wanted(text, |_| true)? {
            Decoded::Event(event) => Ok(event),
            Decoded::Unwanted(_) => unreachable!("every kind is wanted"),
        }
    }

    /// Decodes a delivery body given as bytes: checks UTF-8 once, then [`Event::from_json`].
    pub fn from_slice(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Event::from_json(utf8(bytes)?)
    }
}

/// The body as text: JSON must be UTF-8, checked once for the whole body.
pub(super) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes).map_err(|error| DecodeError::InvalidUtf8 { valid_up_to: error.valid_up_to() })
}

/// What [`decode_wanted`] found.
pub(crate) enum Decoded<'a> {
    /// A wanted event, decoded.
    Event(Event<'a>),
    /// A valid delivery of a kind not wanted: its `data` was checked to be JSON, not typed.
    Unwanted(EventKind),
}

/// Decodes `text` as [`Event::from_json`] does, with the same errors, but types `data` only when
/// `wanted` accepts the event's kind; `data` of an unwanted kind is only checked to be JSON.
pub(crate) fn decode_wanted(
    text: &str,
    wanted: impl Fn(EventKind) -> bool,
) -> Result<Decoded<'_>, DecodeError> {
    match one_pass(text, &wanted) {
        Some(decoded) => Ok(decoded),
        None => decode_slowly(text, &wanted),
    }
}

/// The one pass: `None` when anything is unusual, for [`decode_slowly`] to decide.
fn one_pass<'de>(text: &'de str, wanted: &impl Fn(EventKind) -> bool) -> Option<Decoded<'de>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let decoded = deserializer.deserialize_map(EnvelopeVisitor { text, wanted }).ok()?;
    deserializer.end().ok().map(|()| decoded)
}

/// The one-pass decoder. Anything unusual (a repeated key, `event` and `event_type` naming
/// different kinds after `data` was typed, `data` not fitting) fails it, and
/// [`decode_slowly`] then decides with the raw `data` in hand.
///
/// When `data` comes before the name, the kind is guessed from the text (see
/// [`guess_kind`]) so that `data` is still typed in the same pass; the name read afterwards
/// must confirm the guess, or the decoder fails over to the slow pass as above.
struct EnvelopeVisitor<'de, 'w, W> {
    text: &'de str,
    wanted: &'w W,
}

impl<'de, W: Fn(EventKind) -> bool> Visitor<'de> for EnvelopeVisitor<'de, '_, W> {
    type Value = Decoded<'de>;

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
                    let kind = match name_of(&event, &event_type) {
                        Some(name) => EventKind::from_name(name),
                        None => guess_kind(self.text),
                    };
                    if kind.is_known() && (self.wanted)(kind) {
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
        if !(self.wanted)(kind) {
            return Ok(Decoded::Unwanted(kind));
        }
        let data = match typed {
            Some(typed) if typed.kind() == kind => typed,
            Some(_) => return Err(de::Error::custom("`event` and `event_type` disagree")),
            None => data_from_raw(kind, name, raw.map(RawValue::get)),
        };
        Ok(Decoded::Event(Event {
            data,
            org_id: org_id.flatten(),
            timestamp: timestamp.flatten(),
            previous_attributes: previous.flatten().filter(|raw| !raw.is_null()),
        }))
    }
}

/// The kind named by the last `"event":"…"` or `"event_type":"…"` in `text`: where a sender
/// writes `data` first, the envelope's name follows it. Only a guess (the text found may be
/// inside `data`); [`EnvelopeVisitor`] checks it against the name it reads.
fn guess_kind(text: &str) -> EventKind {
    let Some(at) = text.rfind(r#""event"#) else { return EventKind::Unknown };
    let rest = &text[at + r#""event"#.len()..];
    let rest = rest.strip_prefix(r#"_type""#).or_else(|| rest.strip_prefix('"')).unwrap_or("");
    let rest = rest.trim_start_matches(JSON_WHITESPACE);
    let Some(rest) = rest.strip_prefix(':') else { return EventKind::Unknown };
    let Some(rest) = rest.trim_start_matches(JSON_WHITESPACE).strip_prefix('"') else {
        return EventKind::Unknown;
    };
    rest.split_once('"').map_or(EventKind::Unknown, |(name, _)| EventKind::from_name(name))
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
fn decode_typed<'de, D: Deserializer<'de>>(
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
fn data_from_raw<'a>(kind: EventKind, name: Str<'a>, raw: Option<&'a str>) -> EventData<'a> {
    let Some(raw) = raw.filter(|raw| *raw != "null") else {
        return if kind.is_known() {
            EventData::Undecodable { kind, data: RawJson::NULL, error: DataError::missing() }
        } else {
            EventData::Unknown { name, data: RawJson::NULL }
        };
    };
    if !kind.is_known() {
        return EventData::Unknown { name, data: RawJson::from_json_text(raw) };
    }
    let mut deserializer = serde_json::Deserializer::from_str(raw);
    let typed = decode_typed(kind, &mut deserializer).and_then(|typed| deserializer.end().map(|()| typed));
    typed.unwrap_or_else(|_| {
        // Only a misfit pays for the second pass that tracks the path.
        let mut deserializer = serde_json::Deserializer::from_str(raw);
        let mut track = serde_path_to_error::Track::new();
        let error =
            match decode_typed(kind, serde_path_to_error::Deserializer::new(&mut deserializer, &mut track)) {
                Err(error) => DataError::new(&track.path(), &error),
                Ok(_) => DataError::trailing(),
            };
        EventData::Undecodable { kind, data: RawJson::from_json_text(raw), error }
    })
}

/// The envelope with `data` left raw: the authority when the one-pass decoder gave up.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    event: Option<Str<'a>>,
    #[serde(borrow)]
    event_type: Option<Str<'a>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    org_id: Option<Str<'a>>,
    #[serde(borrow)]
    timestamp: Option<Timestamp<'a>>,
    #[serde(borrow)]
    previous_attributes: Option<RawJson<'a>>,
}

fn decode_slowly(text: &str, wanted: impl Fn(EventKind) -> bool) -> Result<Decoded<'_>, DecodeError> {
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
    if !wanted(kind) {
        return Ok(Decoded::Unwanted(kind));
    }
    Ok(Decoded::Event(Event {
        data: data_from_raw(kind, name, envelope.data.map(RawValue::get)),
        org_id: envelope.org_id,
        timestamp: envelope.timestamp,
        previous_attributes: envelope.previous_attributes.filter(|raw| !raw.is_null()),
    }))
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

/// Decodes `text` as [`decode_slowly`] does, calling `ignored` with each field the model
/// skipped: `("", path)` in the envelope, `("data", path)` in the `data` of a known `kind`.
///
/// `data` is decoded on its own, so its paths are right whichever order the keys came in. A
/// misfit stops the walk; what was found before it is still reported.
pub(crate) fn ignored_fields(text: &str, kind: EventKind, mut ignored: impl FnMut(&'static str, Path<'_>)) {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let envelope: Result<RawEnvelope<'_>, _> =
        serde_ignored::deserialize(&mut deserializer, |path| ignored("", path));
    let Some(data) = envelope.ok().and_then(|envelope| envelope.data).filter(|_| kind.is_known()) else {
        return;
    };
    let mut deserializer = serde_json::Deserializer::from_str(data.get());
    let mut record = |path: Path<'_>| ignored("data", path);
    let _ = decode_typed(kind, serde_ignored::Deserializer::new(&mut deserializer, &mut record));
}
