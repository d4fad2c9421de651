//! Nested objects that must be JSON objects.
//!
//! serde's derived struct decoders also accept a JSON array and fill the fields by position,
//! so `"id": ["3EB0", true]` would decode as a WhatsApp id. Periskope never sends that, and if
//! it did, the typed value would be silently wrong; these `deserialize_with` helpers read only
//! objects (or `null`), so such data is reported as undecodable instead.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Map, Str, list};

/// An optional struct: `null`, absent, or a JSON object.
pub(crate) fn opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_option(Nullable(Object::<T>(PhantomData)))
}

/// An optional struct kept on the heap, for parts that few objects carry: the object holding
/// it stays small.
pub(crate) fn opt_boxed<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Box<T>>, D::Error> {
    opt(deserializer).map(|object| object.map(Box::new))
}

/// An optional array of structs, each a JSON object.
pub(crate) fn opt_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Vec<T>>, D::Error> {
    deserializer.deserialize_option(Nullable(Objects::<T>(PhantomData)))
}

/// An optional map whose values are structs, each a JSON object.
pub(crate) fn opt_map<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Map<'de, T>>, D::Error> {
    deserializer.deserialize_option(Nullable(ObjectMap::<T>(PhantomData)))
}

/// `null` as `None`, anything else through the inner seed.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or a JSON object")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// One struct, read only from a JSON object.
struct Object<T>(PhantomData<T>);

// Not derived: a derive would ask `T: Copy`, and the seed holds no `T`.
impl<T> Clone for Object<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Object<T> {}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Object<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, members: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(members))
    }
}

/// An array of structs, each read only from a JSON object.
struct Objects<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Objects<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Objects<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of JSON objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, items: A) -> Result<Vec<T>, A::Error> {
        list::collect(items, Object(PhantomData))
    }
}

/// A map whose values are structs, each read only from a JSON object.
struct ObjectMap<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjectMap<T> {
    type Value = Map<'de, T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectMap<T> {
    type Value = Map<'de, T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of JSON objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(members.size_hint().unwrap_or(0).min(4096));
        while let Some(key) = members.next_key::<Str<'de>>()? {
            pairs.push((key, members.next_value_seed(Object(PhantomData))?));
        }
        Ok(Map::from_pairs(pairs))
    }
}
