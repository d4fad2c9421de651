//! [`RawJson`]: a JSON value kept as its original text.
//!
//! ```
//! use periskope_webhook::event::RawJson;
//!
//! let raw: RawJson<'_> = serde_json::from_str(r#"{"translations": {"en": "hi"}}"#).unwrap();
//! assert_eq!(raw.get(), r#"{"translations": {"en": "hi"}}"#);
//! let value: serde_json::Value = raw.parse().unwrap();
//! assert_eq!(value["translations"]["en"], "hi");
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value kept verbatim: a slice of the delivery body, never re-serialised.
///
/// Used for objects whose shape Periskope does not document (`raw_data`, `location`,
/// `previous_attributes`, ...) and for the `data` of events the crate cannot type.
/// Decoding it only skips over the value; call [`RawJson::parse`] to read it.
/// Equality compares the JSON text.
///
/// It is the crate's own type, not serde_json's `RawValue`, so that events are the same types
/// whichever parser decoded them (see the `simd` feature). It decodes from serde_json (as a
/// `RawValue`) and from sonic-rs (as a `LazyValue`).
#[derive(Clone)]
pub struct RawJson<'a>(Cow<'a, str>);

/// The newtype name sonic-rs answers with a value's text. Any other deserializer treats it as an
/// ordinary newtype, and the value is then read as serde_json's `RawValue`.
const SONIC_RAW_VALUE: &str = "$sonic_rs::LazyValue";

impl<'a> RawJson<'a> {
    /// JSON `null`.
    pub const NULL: RawJson<'static> = RawJson(Cow::Borrowed("null"));

    /// Wraps a borrowed serde_json raw value.
    pub fn borrowed(raw: &'a RawValue) -> Self {
        RawJson(Cow::Borrowed(raw.get()))
    }

    /// Serialises `value` into an owned raw value.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<RawJson<'static>, serde_json::Error> {
        serde_json::to_string(value).map(|text| RawJson(Cow::Owned(text)))
    }

    /// The JSON text, exactly as received.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// Wraps text the caller knows to be one JSON value.
    pub(crate) fn from_json_text(text: &'a str) -> Self {
        RawJson(Cow::Borrowed(text))
    }

    /// The text for as long as the input it was decoded from, unless it had to be copied.
    pub(crate) fn as_borrowed(&self) -> Option<&'a str> {
        match self.0 {
            Cow::Borrowed(text) => Some(text),
            Cow::Owned(_) => None,
        }
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.get() == "null"
    }

    /// Deserialises the value into `T`, borrowing from it where `T` borrows.
    pub fn parse<'b, T: Deserialize<'b>>(&'b self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// Detaches the value from the input it was decoded from.
    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

impl Default for RawJson<'_> {
    fn default() -> Self {
        RawJson::NULL
    }
}

impl From<Box<RawValue>> for RawJson<'_> {
    fn from(raw: Box<RawValue>) -> Self {
        RawJson(Cow::Owned(String::from(Box::<str>::from(raw))))
    }
}

impl<'a> From<&'a RawValue> for RawJson<'a> {
    fn from(raw: &'a RawValue) -> Self {
        RawJson::borrowed(raw)
    }
}

impl PartialEq for RawJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson<'_> {}

impl fmt::Debug for RawJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawJson").field(&self.get()).finish()
    }
}

impl Serialize for RawJson<'_> {
    /// Writes the text as it is (with serde_json; other serializers see serde_json's raw value).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    /// Borrows from the input: decode with serde_json (`from_str`, `from_slice`) or sonic-rs.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(SONIC_RAW_VALUE, RawJsonVisitor)
    }
}

struct RawJsonVisitor;

impl<'de> Visitor<'de> for RawJsonVisitor {
    type Value = RawJson<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    /// sonic-rs: the value's text, a slice of the input.
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(RawJson(Cow::Borrowed(text)))
    }

    /// sonic-rs: the value's text, when it holds escapes (sonic-rs then lends it more briefly).
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(RawJson(Cow::Owned(text.to_owned())))
    }

    /// Every other deserializer: serde_json's raw value.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(RawJson::borrowed)
    }
}
