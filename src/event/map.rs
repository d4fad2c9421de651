//! [`Map`]: a JSON object kept as its pairs, in order.
//!
//! ```
//! use periskope_webhook::event::Map;
//!
//! let labels: Map<'_, bool> = serde_json::from_str(r#"{"label-a": true, "label-b": false}"#).unwrap();
//! assert_eq!(labels.len(), 2);
//! assert_eq!(labels.get("label-b"), Some(&false));
//! assert_eq!(labels.keys().collect::<Vec<_>>(), ["label-a", "label-b"]);
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::Str;

/// A JSON object as a list of `(key, value)` pairs in the order received.
///
/// Periskope sends maps keyed by WhatsApp id (`members`, `delivery_info.read`) or label
/// (`label_ids`, `custom_properties`); a group chat's `members` can hold thousands of entries.
/// A vector of pairs decodes without hashing and without a table allocation, which is what a
/// webhook handler wants: most handlers iterate, few look up. [`Map::get`] is a linear search.
#[derive(Clone, PartialEq, Eq)]
pub struct Map<'a, V>(Vec<(Str<'a>, V)>);

impl<'a, V> Map<'a, V> {
    /// An empty map.
    pub const fn new() -> Self {
        Map(Vec::new())
    }

    pub(crate) fn from_pairs(pairs: Vec<(Str<'a>, V)>) -> Self {
        Map(pairs)
    }

    /// The value of `key`; with duplicate keys, the last one, as JSON parsers usually keep.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().rev().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k.as_str() == key)
    }

    /// Appends a pair.
    pub fn insert(&mut self, key: impl Into<Str<'a>>, value: V) {
        self.0.push((key.into(), value));
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    /// The values, in order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[(Str<'a>, V)] {
        &self.0
    }
}

impl<V> Default for Map<'_, V> {
    fn default() -> Self {
        Map(Vec::new())
    }
}

impl<V: fmt::Debug> fmt::Debug for Map<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl<'a, K: Into<Str<'a>>, V> FromIterator<(K, V)> for Map<'a, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Map(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<'a, V> IntoIterator for Map<'a, V> {
    type Item = (Str<'a>, V);
    type IntoIter = std::vec::IntoIter<(Str<'a>, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<V: Serialize> Serialize for Map<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Map<'a, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

struct MapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = Map<'de, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(access.size_hint().unwrap_or(0).min(4096));
        while let Some(pair) = access.next_entry::<Str<'de>, V>()? {
            pairs.push(pair);
        }
        Ok(Map(pairs))
    }
}
