//! [`Reaction`]: the `data` of `reaction.created` and `reaction.updated`.
//!
//! ```
//! use periskope_webhook::event::{Ack, Reaction};
//!
//! let reaction: Reaction<'_> = serde_json::from_str(
//!     r#"{"reaction": "😀", "ack": "0", "orphan": "0", "msg_id": {"id": "3EB0", "fromMe": false}}"#,
//! ).unwrap();
//! assert_eq!(reaction.reaction.as_deref(), Some("😀"));
//! assert_eq!(reaction.ack, Some(Ack::Pending));
//! assert_eq!(reaction.orphan, Some(0));
//! ```

use serde::{Deserialize, Serialize};

use super::message::{Ack, opt_ack};
use super::number::opt_int;
use super::object;
use super::{Str, Timestamp, WaId};

/// A reaction to a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Reaction<'a> {
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// The chat id.
    pub chat_id: Option<Str<'a>>,
    /// Serialized id of the message reacted to.
    pub message_id: Option<Str<'a>>,
    /// Delivery status; sent as `"0"`, `0` or null.
    #[serde(default, deserialize_with = "opt_ack")]
    pub ack: Option<Ack>,
    /// The reaction's own WhatsApp id.
    #[serde(default, deserialize_with = "object::opt")]
    pub id: Option<WaId<'a>>,
    /// Whether the reaction lost its target message; sent as `"0"`, `0` or null.
    #[serde(default, deserialize_with = "opt_int")]
    pub orphan: Option<i64>,
    /// Why it is orphaned.
    pub orphan_reason: Option<Str<'a>>,
    /// The emoji. How a removed reaction is sent is undocumented (possibly empty).
    pub reaction: Option<Str<'a>>,
    /// Whether it was read.
    pub read: Option<bool>,
    /// Serialized reaction id.
    pub reaction_id: Option<Str<'a>>,
    /// When it was made.
    pub timestamp: Option<Timestamp<'a>>,
    /// The id of the message reacted to.
    #[serde(default, deserialize_with = "object::opt")]
    pub msg_id: Option<WaId<'a>>,
    /// The reacting user's WhatsApp id.
    pub sender_id: Option<Str<'a>>,
    /// In Periskope's example, the target message's bare WhatsApp id.
    pub unique_id: Option<Str<'a>>,
}
