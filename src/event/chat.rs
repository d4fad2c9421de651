//! [`Chat`]: the `data` of `chat.created` and `chat.custom_properties.updated`, with its members.
//!
//! ```
//! use periskope_webhook::event::{Chat, ChatType};
//!
//! let chat: Chat<'_> = serde_json::from_str(r#"{
//!     "chat_id": "1203@g.us",
//!     "chat_type": "group",
//!     "members": {"9190@c.us": {"contact_name": "Support", "is_admin": true}},
//!     "custom_properties": {"Plan": "Gold"}
//! }"#).unwrap();
//! assert_eq!(chat.chat_type, Some(ChatType::Group));
//! let members = chat.members.unwrap();
//! assert_eq!(members.get("9190@c.us").unwrap().contact_name.as_deref(), Some("Support"));
//! assert_eq!(chat.custom_properties.unwrap().get("Plan").map(|v| v.as_str()), Some("Gold"));
//! ```

use serde::{Deserialize, Serialize};

use super::list;
use super::number::opt_int;
use super::object;
use super::open_enum::open_enum;
use super::{Map, Message, RawJson, Str, Timestamp};

/// A WhatsApp chat (group or one-to-one) as Periskope describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Chat<'a> {
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// The chat id, `…@c.us` or `…@g.us`.
    pub chat_id: Option<Str<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// Group name, or contact name for one-to-one chats.
    pub chat_name: Option<Str<'a>>,
    /// Chat type (`group`, `user`, ...).
    pub chat_type: Option<ChatType>,
    /// Members by WhatsApp id. Thousands in large groups.
    #[serde(default, deserialize_with = "object::opt_map")]
    pub members: Option<Map<'a, ChatMember<'a>>>,
    /// Image URL or storage path.
    pub chat_image: Option<Str<'a>>,
    /// Comma-separated label names (ticket payloads).
    pub chat_labels: Option<Str<'a>>,
    /// Label ids.
    pub label_ids: Option<Map<'a, bool>>,
    /// Label names.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub labels: Option<Vec<Str<'a>>>,
    /// Creation time.
    pub created_at: Option<Timestamp<'a>>,
    /// Last update.
    pub updated_at: Option<Timestamp<'a>>,
    /// Group invite link.
    pub invite_link: Option<Str<'a>>,
    /// Muted.
    pub is_muted: Option<bool>,
    /// Archived.
    pub is_archived: Option<bool>,
    /// The org phone has left.
    pub is_exited: Option<bool>,
    /// Pinned.
    pub is_pinned: Option<bool>,
    /// Custom properties: name → selected option or text.
    pub custom_properties: Option<Map<'a, Str<'a>>>,
    /// Group description.
    pub group_description: Option<Str<'a>>,
    /// When the chat was closed: text or a number.
    pub closed_at: Option<Timestamp<'a>>,
    /// Assigned user's email.
    pub assigned_to: Option<Str<'a>>,
    /// Access by user email.
    pub chat_access: Option<Map<'a, bool>>,
    /// Groups shared with the contact.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub common_chats: Option<Vec<Str<'a>>>,
    /// Number of members.
    #[serde(default, deserialize_with = "opt_int")]
    pub member_count: Option<i64>,
    /// The latest message.
    #[serde(default, deserialize_with = "object::opt")]
    pub latest_message: Option<Box<Message<'a>>>,
    /// Time of the latest message: text or a number.
    pub latest_message_timestamp: Option<Timestamp<'a>>,
    /// Only admins may edit the group info.
    pub info_admins_only: Option<bool>,
    /// Only admins may send messages.
    pub messages_admins_only: Option<bool>,
    /// Only admins may add members.
    pub add_members_admins_only: Option<bool>,
    /// The org phone currently serving the chat.
    pub active_phone: Option<Str<'a>>,
    /// Org phones in the chat.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub chat_org_phones: Option<Vec<Str<'a>>>,
    /// Group metadata, kept verbatim.
    pub group_metadata: Option<RawJson<'a>>,
    /// Snooze settings, kept verbatim.
    pub snooze_metadata: Option<RawJson<'a>>,
    /// AI agent settings, kept verbatim.
    pub ai_metadata: Option<RawJson<'a>>,
    /// Parent community id.
    pub parent_community_id: Option<Str<'a>>,
    /// Who started the chat.
    pub initiated_by: Option<Str<'a>>,
}

/// A chat member (a value of [`Chat::members`]).
///
/// Periskope merges contact columns in, so more keys than these may arrive; they are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct ChatMember<'a> {
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// The chat id.
    pub chat_id: Option<Str<'a>>,
    /// The member's WhatsApp id.
    pub contact_id: Option<Str<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// Group admin.
    pub is_admin: Option<bool>,
    /// Group super admin.
    pub is_super_admin: Option<bool>,
    /// One of the organisation's own phones or users.
    pub is_internal: Option<bool>,
    /// Contact name.
    pub contact_name: Option<Str<'a>>,
    /// Display colour, e.g. `#B4876E`.
    pub contact_color: Option<Str<'a>>,
    /// Contact image URL.
    pub contact_image: Option<Str<'a>>,
    /// Comma-separated contact labels.
    pub contact_labels: Option<Str<'a>>,
}

open_enum! {
    /// A chat's type. Periskope uses several spellings for the same idea; each is kept apart.
    pub enum ChatType {
        /// `group`.
        Group = "group",
        /// `user`: one-to-one.
        User = "user",
        /// `business`.
        Business = "business",
        /// `chat`: ticket payloads use it for one-to-one chats.
        Chat = "chat",
        /// `individual`: the REST list filter's spelling.
        Individual = "individual",
        /// `unknown`.
        Unknown = "unknown",
    }
}
