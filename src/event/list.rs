//! Arrays of strings (`recipientids`, `mentioned_ids`, `labels`, ...) read into a `Vec` sized
//! once.
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
//! element; these lists hold one to a few ids, so the first element allocates room for four at
//! once, the capacity that growth would pick, without going through it. An empty array
//! allocates nothing.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

use super::Str;

/// The room made at the first element.
const FIRST_CAPACITY: usize = 4;

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

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
        let Some(first) = items.next_element::<Str<'de>>()? else {
            return Ok(Strs(Vec::new()));
        };
        let mut strs = Vec::with_capacity(items.size_hint().map_or(FIRST_CAPACITY, |rest| rest + 1).min(256));
        strs.push(first);
        while let Some(item) = items.next_element()? {
            strs.push(item);
        }
        Ok(Strs(strs))
    }
}
