//! JSON arrays read into a `Vec` sized once: lists of strings (`recipientids`, `mentioned_ids`,
//! `labels`, ...), arrays of objects and a message's links.
//!
//! ```
//! use periskope_webhook::event::ChatNotification;
//!
//! let five = r#"{"recipientids": ["1@c.us", "2@c.us", "3@c.us", "4@c.us", "5@c.us"]}"#;
//! let notification: ChatNotification<'_> = serde_json::from_str(five).unwrap();
//! assert_eq!(notification.recipient_ids.unwrap()[4], "5@c.us");
//!
//! let notification: ChatNotification<'_> = serde_json::from_str(r#"{"recipientids": []}"#).unwrap();
//! assert_eq!(notification.recipient_ids, Some(Vec::new()));
//! let notification: ChatNotification<'_> = serde_json::from_str(r#"{"recipientids": null}"#).unwrap();
//! assert_eq!(notification.recipient_ids, None);
//! assert!(serde_json::from_str::<ChatNotification<'_>>(r#"{"recipientids": ["1@c.us", 2]}"#).is_err());
//! ```
//!
//! serde's own `Vec` decoder starts empty (serde_json gives no length) and grows on the first
//! element; these arrays hold one to a few items, so the first element allocates room for four
//! at once, the capacity that growth would pick for items of up to 1 KB, without going through
//! it. An empty array allocates nothing.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::Str;

/// The room made at the first element, when the decoder does not tell the length.
const FIRST_CAPACITY: usize = 4;
/// The most room made from a length the decoder tells, before any item is read.
const MAX_TOLD_CAPACITY: usize = 256;

/// Reads the rest of a JSON array into a `Vec`, each item through `seed`.
pub(crate) fn collect<'de, A, S>(mut items: A, seed: S) -> Result<Vec<S::Value>, A::Error>
where
    A: SeqAccess<'de>,
    S: DeserializeSeed<'de> + Copy,
{
    let Some(first) = items.next_element_seed(seed)? else {
        return Ok(Vec::new());
    };
    let capacity = items.size_hint().map_or(FIRST_CAPACITY, |rest| rest + 1).min(MAX_TOLD_CAPACITY);
    let mut collected = Vec::with_capacity(capacity);
    collected.push(first);
    while let Some(item) = items.next_element_seed(seed)? {
        collected.push(item);
    }
    Ok(collected)
}

/// An optional array of strings: `null`, absent, or a JSON array of strings.
pub(crate) fn opt_strs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Str<'de>>>, D::Error> {
    Option::<Strs<'de>>::deserialize(deserializer).map(|strs| strs.map(|Strs(items)| items))
}

struct Strs<'de>(Vec<Str<'de>>);

impl<'de> Deserialize<'de> for Strs<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(StrsVisitor)
    }
}

struct StrsVisitor;

impl<'de> Visitor<'de> for StrsVisitor {
    type Value = Strs<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, items: A) -> Result<Self::Value, A::Error> {
        collect(items, PhantomData::<Str<'de>>).map(Strs)
    }
}
