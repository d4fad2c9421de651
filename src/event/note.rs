//! [`Note`]: the `data` of `note.created`, a private note that never reaches WhatsApp.
//!
//! ```
//! use periskope_webhook::event::Note;
//!
//! let note: Note<'_> = serde_json::from_str(
//!     r#"{"body": "Call back", "performed_by": "api", "is_private_note": true, "ack": "3"}"#,
//! ).unwrap();
//! assert_eq!(note.body.as_deref(), Some("Call back"));
//! assert_eq!(note.is_private_note, Some(true));
//! ```

use serde::{Deserialize, Serialize};

use super::list;
use super::message::{Ack, MessageType, opt_ack};
use super::object;
use super::{Media, Str, Timestamp};

/// A private note posted in a chat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Note<'a> {
    /// Note id, `true_<uuid>_api` or `true_<…>_<email>`.
    pub message_id: Option<Str<'a>>,
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// The chat id.
    pub chat_id: Option<Str<'a>>,
    /// Status; sent as `"3"`.
    #[serde(default, deserialize_with = "opt_ack")]
    pub ack: Option<Ack>,
    /// The note's text.
    pub body: Option<Str<'a>>,
    /// Always true for notes.
    pub from_me: Option<bool>,
    /// Message type.
    pub message_type: Option<MessageType>,
    /// When it was posted.
    pub timestamp: Option<Timestamp<'a>>,
    /// Last update.
    pub updated_at: Option<Timestamp<'a>>,
    /// Author: user email or `api`.
    pub performed_by: Option<Str<'a>>,
    /// Text before an edit.
    pub prev_body: Option<Str<'a>>,
    /// Quoted message id.
    pub quoted_message_id: Option<Str<'a>>,
    /// Sender WhatsApp id.
    pub sender_phone: Option<Str<'a>>,
    /// Same as `unique_id`.
    pub sent_message_id: Option<Str<'a>>,
    /// Bare id.
    pub unique_id: Option<Str<'a>>,
    /// Always true.
    pub is_private_note: Option<bool>,
    /// True when deleted, otherwise null.
    pub is_deleted: Option<bool>,
    /// Mentioned users, written `@<email>`.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub mentioned_ids: Option<Vec<Str<'a>>>,
    /// Attachment; webhooks carry it inline as base64 in `filedata`.
    #[serde(default, deserialize_with = "object::opt")]
    pub media: Option<Media<'a>>,
}
