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

use serde::de::{Deserialize, Deserializer};
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
/// It is the crate's own type, not serde_json's `RawValue`, so that it can also own its text
/// ([`RawJson::into_owned`], [`RawJson::from_value`]).
#[derive(Clone)]
pub struct RawJson<'a>(Cow<'a, str>);

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
    /// Borrows from the input: decode with serde_json's `from_str` or `from_slice`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(deserializer).map(RawJson::borrowed)
    }
}
