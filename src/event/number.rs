//! Numbers that Periskope sends as JSON numbers or as numeric strings.
//!
//! `ack`, `orphan`, `forwarding_score`, `duration` and ticket `priority` arrive as `"2"` in one
//! example and `2` in another. These `deserialize_with` helpers accept both, and `null` or an
//! empty string as absent; serialising writes plain numbers.
//!
//! Floats are read from the number's text with the standard library's parser, which rounds
//! correctly: serde_json's default float parsing may be one unit in the last place off for
//! long numerals, so a decoded event would not survive a serialise-then-decode round trip.
//! (serde_json's `float_roundtrip` feature would fix it too, but for every crate in the build.)

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::{RawJson, Str};

/// An optional integer from a number, a numeric string, `null` or `""`.
pub(crate) fn opt_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_any(IntVisitor)
}

/// An optional float from a number, a numeric string, `null` or `""`, correctly rounded.
pub(crate) fn opt_float<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let raw = RawJson::deserialize(deserializer)?;
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => float_from_text(text).map(Some),
        Some(b'"') => {
            let unescaped: Str<'_> = serde_json::from_str(text).map_err(de::Error::custom)?;
            let trimmed = unescaped.trim();
            if trimmed.is_empty() { Ok(None) } else { float_from_text(trimmed).map(Some) }
        }
        _ if raw.is_null() => Ok(None),
        _ => Err(de::Error::invalid_type(de::Unexpected::Other("a JSON value that is not a number"), &FLOAT)),
    }
}

const FLOAT: &str = "a number or a string holding one";

fn float_from_text<E: de::Error>(text: &str) -> Result<f64, E> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(E::invalid_value(de::Unexpected::Other("a number out of range"), &FLOAT)),
        Err(_) => Err(E::invalid_value(de::Unexpected::Other("a non-numeric string"), &FLOAT)),
    }
}

/// Reads an integer the way [`opt_int`] does, for types built on one (such as `Ack`).
pub(crate) fn int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    opt_int(deserializer)?.ok_or_else(|| de::Error::invalid_type(de::Unexpected::Unit, &IntVisitor))
}

struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Some(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        i64::try_from(value).map(Some).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        // JavaScript senders may write `2.0` for an integer; anything fractional is not one.
        if value.fract() == 0.0 && value.abs() < 9.007_199_254_740_992e15 {
            Ok(Some(value as i64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        trimmed
            .parse()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Other("a non-numeric string"), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}
