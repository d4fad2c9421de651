//! [`Message`]: the `data` of every `message.*` event, with its media, delivery and flag parts.
//!
//! ```
//! use periskope_webhook::event::{Ack, Message, MessageType};
//!
//! let message: Message<'_> = serde_json::from_str(r#"{
//!     "message_id": "true_1203@g.us_3EB0_9190@c.us",
//!     "ack": "2",
//!     "message_type": "image",
//!     "links": "[]",
//!     "forwarding_score": "0",
//!     "timestamp": "2024-05-13 11:19:34+00"
//! }"#).unwrap();
//! assert_eq!(message.ack, Some(Ack::Delivered));
//! assert_eq!(message.message_type, Some(MessageType::Image));
//! assert_eq!(message.forwarding_score, Some(0));
//! assert!(message.links.unwrap().is_empty());
//! ```

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::list;
use super::number::{opt_float, opt_int};
use super::object;
use super::open_enum::open_enum;
use super::{Map, RawJson, Reaction, Str, Timestamp, WaId};

/// A WhatsApp message as Periskope describes it (whatsapp-web.js's model in snake_case).
///
/// Every field is optional: Periskope's columns are nullable and field reports show messages
/// with few fields. Unknown fields are ignored.
///
/// The parts few messages carry (`media`, `delivery_info`, `poll_info`, `flag_metadata`) are
/// boxed: every message is then a third smaller to allocate and to move while it is decoded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Message<'a> {
    /// Serialized id, `<fromMe>_<chat id>_<message id>[_<participant>]`.
    pub message_id: Option<Str<'a>>,
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// The chat id, `…@c.us` or `…@g.us`.
    pub chat_id: Option<Str<'a>>,
    /// Delivery status; sent as `"2"` or `2`.
    #[serde(default, deserialize_with = "opt_ack")]
    pub ack: Option<Ack>,
    /// The WhatsApp id object.
    #[serde(default, deserialize_with = "object::opt")]
    pub id: Option<WaId<'a>>,
    /// Sender in groups; often null.
    pub author: Option<Str<'a>>,
    /// Text, or the caption of a media message.
    pub body: Option<Str<'a>>,
    /// Whether it is a broadcast.
    pub broadcast: Option<bool>,
    /// Periskope broadcast id.
    pub broadcast_id: Option<Str<'a>>,
    /// Device type, e.g. `android`, `ios`, `web`.
    pub device_type: Option<Str<'a>>,
    /// Media duration in seconds; sent as a string or a number.
    #[serde(default, deserialize_with = "opt_float")]
    pub duration: Option<f64>,
    /// Whether the message is flagged.
    pub flag_status: Option<bool>,
    /// Who flagged it and how it was answered.
    #[serde(default, deserialize_with = "object::opt_boxed")]
    pub flag_metadata: Option<Box<FlagMetadata<'a>>>,
    /// Time to respond to a flag.
    #[serde(default, deserialize_with = "opt_float")]
    pub flag_response_time: Option<f64>,
    /// How often it was forwarded; sent as `"0"` or `0`.
    #[serde(default, deserialize_with = "opt_int")]
    pub forwarding_score: Option<i64>,
    /// Sender WhatsApp id.
    pub from: Option<Str<'a>>,
    /// Recipient WhatsApp id.
    pub to: Option<Str<'a>>,
    /// Sent by the org phone.
    pub from_me: Option<bool>,
    /// Has media; observed `null` even when `media` is present.
    pub has_media: Option<bool>,
    /// Quotes another message.
    pub has_quoted_msg: Option<bool>,
    /// Has a reaction.
    pub has_reaction: Option<bool>,
    /// Group invite data.
    pub invite_v4: Option<RawJson<'a>>,
    /// Disappearing message.
    pub is_ephemeral: Option<bool>,
    /// Forwarded.
    pub is_forwarded: Option<bool>,
    /// A GIF.
    pub is_gif: Option<bool>,
    /// Starred.
    pub is_starred: Option<bool>,
    /// A status update.
    pub is_status: Option<bool>,
    /// Deleted.
    pub is_deleted: Option<bool>,
    /// Links in the message; sent as a JSON array or as a string holding one.
    pub links: Option<Links<'a>>,
    /// Location data.
    pub location: Option<RawJson<'a>>,
    /// Attached media.
    #[serde(default, deserialize_with = "object::opt_boxed")]
    pub media: Option<Box<Media<'a>>>,
    /// WhatsApp media key.
    pub media_key: Option<Str<'a>>,
    /// Mentioned WhatsApp ids.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub mentioned_ids: Option<Vec<Str<'a>>>,
    /// Message type (`chat`, `image`, ...).
    pub message_type: Option<MessageType>,
    /// Business order id.
    pub order_id: Option<Str<'a>>,
    /// Extra data (may hold `translations`), kept verbatim.
    pub raw_data: Option<RawJson<'a>>,
    /// Token.
    pub token: Option<Str<'a>>,
    /// Raw vCard strings.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub vcards: Option<Vec<Str<'a>>>,
    /// When the message was sent.
    pub timestamp: Option<Timestamp<'a>>,
    /// Who triggered it (user email, `api`, ...).
    pub performed_by: Option<Str<'a>>,
    /// Text before an edit.
    pub prev_body: Option<Str<'a>>,
    /// Id of the quoted message.
    pub quoted_message_id: Option<Str<'a>>,
    /// Sender WhatsApp id.
    pub sender_phone: Option<Str<'a>>,
    /// UUID of a message sent through Periskope.
    pub sent_message_id: Option<Str<'a>>,
    /// Per-recipient delivery and read times.
    #[serde(default, deserialize_with = "object::opt_boxed")]
    pub delivery_info: Option<Box<DeliveryInfo<'a>>>,
    /// Last update.
    pub updated_at: Option<Timestamp<'a>>,
    /// Ticket the message is attached to.
    pub message_ticket_id: Option<Str<'a>>,
    /// Bare WhatsApp message id.
    pub unique_id: Option<Str<'a>>,
    /// Poll definition.
    #[serde(default, deserialize_with = "object::opt_boxed")]
    pub poll_info: Option<Box<PollInfo<'a>>>,
    /// Poll results: option → voter → value.
    pub poll_results: Option<Map<'a, Map<'a, Str<'a>>>>,
    /// Reactions (REST responses carry them).
    #[serde(default, deserialize_with = "object::opt_vec")]
    pub reactions: Option<Vec<Reaction<'a>>>,
    /// Whether this is a private note.
    pub is_private_note: Option<bool>,
}

/// Media attached to a message or note. Every key is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Media<'a> {
    /// A storage path (`/storage/v1/object/public/...`) or an absolute URL.
    pub path: Option<Str<'a>>,
    /// MIME type.
    pub mimetype: Option<Str<'a>>,
    /// File name.
    pub filename: Option<Str<'a>>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "opt_int")]
    pub size: Option<i64>,
    /// Image or video dimensions.
    #[serde(default, deserialize_with = "object::opt")]
    pub dimensions: Option<Dimensions>,
    /// Thumbnail.
    pub thumbnail: Option<Str<'a>>,
    /// Inline file as a `data:<mime>;base64,...` URL (private notes).
    pub filedata: Option<Str<'a>>,
    /// Whether the media was compressed.
    pub compress: Option<bool>,
}

/// Width, height and aspect ratio of an image or video.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dimensions {
    /// Width in pixels.
    #[serde(default, deserialize_with = "opt_int")]
    pub width: Option<i64>,
    /// Height in pixels.
    #[serde(default, deserialize_with = "opt_int")]
    pub height: Option<i64>,
    /// Aspect ratio.
    #[serde(default, deserialize_with = "opt_float")]
    pub ar: Option<f64>,
}

/// Per-recipient delivery progress: WhatsApp id → Unix milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct DeliveryInfo<'a> {
    /// When each recipient received it.
    pub delivered: Option<Map<'a, i64>>,
    /// When each recipient read it.
    pub read: Option<Map<'a, i64>>,
    /// Recipients it has not reached yet.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub pending: Option<Vec<Str<'a>>>,
    /// Number of recipients it reached.
    #[serde(default, deserialize_with = "opt_int")]
    pub delivered_count: Option<i64>,
    /// Number of recipients who read it.
    #[serde(default, deserialize_with = "opt_int")]
    pub read_count: Option<i64>,
}

/// Flag details of a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct FlagMetadata<'a> {
    /// Whether the flag is set.
    pub status: Option<bool>,
    /// How it was answered: `message`, `reaction`, `ticket` or `manual`.
    pub response_type: Option<Str<'a>>,
    /// Id of the response.
    pub response_id: Option<Str<'a>>,
    /// When it was answered.
    pub response_timestamp: Option<Timestamp<'a>>,
    /// Who answered.
    pub response_email: Option<Str<'a>>,
    /// Who flagged it.
    pub flagged_by: Option<Str<'a>>,
    /// When it was flagged.
    pub flagged_at: Option<Timestamp<'a>>,
    /// Phone that answered.
    pub response_phone: Option<Str<'a>>,
}

/// A poll's definition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct PollInfo<'a> {
    /// The question.
    #[serde(rename = "pollName")]
    pub poll_name: Option<Str<'a>>,
    /// The options.
    #[serde(default, deserialize_with = "list::opt_strs", rename = "pollOptions")]
    pub poll_options: Option<Vec<Str<'a>>>,
    /// Poll settings.
    #[serde(default, deserialize_with = "object::opt")]
    pub options: Option<PollOptions<'a>>,
}

/// A poll's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct PollOptions<'a> {
    /// Whether several answers are allowed.
    #[serde(rename = "allowMultipleAnswers")]
    pub allow_multiple_answers: Option<bool>,
    /// The poll's secret.
    #[serde(rename = "messageSecret")]
    pub message_secret: Option<Vec<i64>>,
    /// Poll id.
    #[serde(rename = "pollId")]
    pub poll_id: Option<Str<'a>>,
}

open_enum! {
    /// A message's type. Known values from Periskope's docs and SDK; others are kept.
    pub enum MessageType {
        /// `chat`: text.
        Chat = "chat",
        /// `image`.
        Image = "image",
        /// `video`.
        Video = "video",
        /// `audio`.
        Audio = "audio",
        /// `document`.
        Document = "document",
        /// `ptt`: a voice note.
        Ptt = "ptt",
        /// `sticker`.
        Sticker = "sticker",
        /// `vcard`.
        Vcard = "vcard",
        /// `multi_vcard`.
        MultiVcard = "multi_vcard",
        /// `poll_creation`.
        PollCreation = "poll_creation",
        /// `location`.
        Location = "location",
        /// `ciphertext`: not yet decrypted.
        Ciphertext = "ciphertext",
    }
}

/// A message's delivery status (`ack`), sent as `"2"` or `2`. It never decreases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Ack {
    /// `-1`: sending failed.
    Failed,
    /// `0`: waiting to be sent.
    Pending,
    /// `1`: reached WhatsApp's server.
    Server,
    /// `2`: delivered (to at least one participant in a group).
    Delivered,
    /// `3`: delivered to every participant.
    DeliveredToAll,
    /// `4`: read (by at least one participant in a group).
    Read,
    /// `5`: read by every participant.
    ReadByAll,
    /// A code this version of the crate does not know, kept as sent.
    Other(i64),
}

impl Ack {
    /// The status for a numeric code.
    pub const fn from_code(code: i64) -> Ack {
        match code {
            -1 => Ack::Failed,
            0 => Ack::Pending,
            1 => Ack::Server,
            2 => Ack::Delivered,
            3 => Ack::DeliveredToAll,
            4 => Ack::Read,
            5 => Ack::ReadByAll,
            other => Ack::Other(other),
        }
    }

    /// Whether the code is one this crate knows.
    pub const fn is_known(self) -> bool {
        !matches!(self, Ack::Other(_))
    }

    /// The numeric code.
    pub const fn code(self) -> i64 {
        match self {
            Ack::Failed => -1,
            Ack::Pending => 0,
            Ack::Server => 1,
            Ack::Delivered => 2,
            Ack::DeliveredToAll => 3,
            Ack::Read => 4,
            Ack::ReadByAll => 5,
            Ack::Other(code) => code,
        }
    }
}

impl super::open_enum::OpenValue for Ack {
    fn unknown_text(&self) -> Option<String> {
        (!self.is_known()).then(|| self.code().to_string())
    }
}

impl Serialize for Ack {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for Ack {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::number::int(deserializer).map(Ack::from_code)
    }
}

/// An optional [`Ack`] from a number, a numeric string, `null` or `""`.
pub(crate) fn opt_ack<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Ack>, D::Error> {
    Ok(opt_int(deserializer)?.map(Ack::from_code))
}

/// A message's links: Periskope sends a JSON array, or a string holding one (`"[]"`).
///
/// A string that does not hold a JSON array is kept as [`Links::Text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Links<'a> {
    /// The links, each kept as raw JSON (whatsapp-web.js writes `{link, isSuspicious}`).
    List(Vec<RawJson<'a>>),
    /// A string that is not a JSON array, kept as sent.
    Text(Str<'a>),
}

impl Links<'_> {
    /// The links; empty for [`Links::Text`].
    pub fn items(&self) -> &[RawJson<'_>] {
        match self {
            Links::List(items) => items,
            Links::Text(_) => &[],
        }
    }

    /// Whether there are no links.
    pub fn is_empty(&self) -> bool {
        self.items().is_empty()
    }
}

impl Default for Links<'_> {
    fn default() -> Self {
        Links::List(Vec::new())
    }
}

impl Serialize for Links<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Links::List(items) => items.serialize(serializer),
            Links::Text(text) => text.serialize(serializer),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Links<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LinksVisitor)
    }
}

struct LinksVisitor;

impl<'de> Visitor<'de> for LinksVisitor {
    type Value = Links<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of links or a string holding one")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, items: A) -> Result<Self::Value, A::Error> {
        list::collect(items, PhantomData::<RawJson<'de>>).map(Links::List)
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(match serde_json::from_str::<Vec<RawJson<'de>>>(text) {
            Ok(items) => Links::List(items),
            Err(_) => Links::Text(Str::borrowed(text)),
        })
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(match serde_json::from_str::<Vec<RawJson<'_>>>(text) {
            Ok(items) => Links::List(items.into_iter().map(RawJson::into_owned).collect()),
            Err(_) => Links::Text(text.to_owned().into()),
        })
    }
}
