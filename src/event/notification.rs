//! [`ChatNotification`]: the `data` of `chat.notification.created`.
//!
//! ```
//! use periskope_webhook::event::{ChatNotification, NotificationType};
//!
//! let notification: ChatNotification<'_> = serde_json::from_str(
//!     r#"{"type": "remove", "recipientids": ["9195@c.us"], "id": {"serialized": "x_remove"}}"#,
//! ).unwrap();
//! assert_eq!(notification.notification_type, Some(NotificationType::Remove));
//! assert_eq!(notification.recipient_ids.unwrap()[0], "9195@c.us");
//! ```

use serde::{Deserialize, Serialize};

use super::list;
use super::object;
use super::open_enum::open_enum;
use super::{RawJson, Str, Timestamp, WaId};

/// An action on a chat: members added or removed, settings changed, ...
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct ChatNotification<'a> {
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// Serialized id plus `_<type>`.
    pub notification_id: Option<Str<'a>>,
    /// The chat id.
    pub chat_id: Option<Str<'a>>,
    /// Who performed the action.
    pub author: Option<Str<'a>>,
    /// Text, if any.
    pub body: Option<Str<'a>>,
    /// The WhatsApp id object (written with `serialized`, no underscore).
    #[serde(default, deserialize_with = "object::opt")]
    pub id: Option<WaId<'a>>,
    /// The affected members (Periskope spells it `recipientids`).
    #[serde(default, deserialize_with = "list::opt_strs", rename = "recipientids")]
    pub recipient_ids: Option<Vec<Str<'a>>>,
    /// What happened.
    #[serde(rename = "type")]
    pub notification_type: Option<NotificationType>,
    /// When it happened.
    pub timestamp: Option<Timestamp<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// Bare id.
    pub unique_id: Option<Str<'a>>,
    /// Extra data, kept verbatim.
    pub metadata: Option<RawJson<'a>>,
}

open_enum! {
    /// What a chat notification reports (WhatsApp's group actions).
    pub enum NotificationType {
        /// `add`: members added.
        Add = "add",
        /// `remove`: members removed.
        Remove = "remove",
        /// `promote`: made admin.
        Promote = "promote",
        /// `demote`: admin rights removed.
        Demote = "demote",
        /// `invite`: joined by invite.
        Invite = "invite",
        /// `leave`: left.
        Leave = "leave",
        /// `announce_true`: only admins may send.
        AnnounceTrue = "announce_true",
        /// `announce_false`: everyone may send.
        AnnounceFalse = "announce_false",
        /// `restrict_true`: only admins may edit info.
        RestrictTrue = "restrict_true",
        /// `restrict_false`: everyone may edit info.
        RestrictFalse = "restrict_false",
        /// `memberaddmode_true`: everyone may add members.
        MemberAddModeTrue = "memberaddmode_true",
        /// `memberaddmode_false`: only admins may add members.
        MemberAddModeFalse = "memberaddmode_false",
        /// `subject`: name changed.
        Subject = "subject",
        /// `desc`: description changed.
        Desc = "desc",
        /// `call`: a call.
        Call = "call",
    }
}
