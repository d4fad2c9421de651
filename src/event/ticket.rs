//! [`TicketInfo`]: the `data` of `ticket.*` events: the ticket, its chat and its messages.
//!
//! ```
//! use periskope_webhook::event::{TicketInfo, TicketStatus};
//!
//! let info: TicketInfo<'_> = serde_json::from_str(
//!     r#"{"ticket": {"ticket_id": "TICKET-1", "status": "open", "priority": "2"}, "attached_messages": []}"#,
//! ).unwrap();
//! let ticket = info.ticket.unwrap();
//! assert_eq!(ticket.status, Some(TicketStatus::Open));
//! assert_eq!(ticket.priority, Some(2));
//! ```

use serde::{Deserialize, Serialize};

use super::number::opt_int;
use super::object;
use super::open_enum::open_enum;
use super::{Chat, Map, Str, Timestamp};

/// A ticket with the chat and messages it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct TicketInfo<'a> {
    /// The chat (`ticket.deleted` sends a compact one).
    #[serde(default, deserialize_with = "object::opt")]
    pub chat: Option<Chat<'a>>,
    /// The message the ticket was raised from.
    #[serde(default, deserialize_with = "object::opt")]
    pub message: Option<TicketMessage<'a>>,
    /// The ticket.
    #[serde(default, deserialize_with = "object::opt")]
    pub ticket: Option<Ticket<'a>>,
    /// Messages attached to the ticket.
    #[serde(default, deserialize_with = "object::opt_vec")]
    pub attached_messages: Option<Vec<TicketMessage<'a>>>,
}

/// A message as ticket payloads describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct TicketMessage<'a> {
    /// Text.
    pub body: Option<Str<'a>>,
    /// The chat id.
    pub chat_id: Option<Str<'a>>,
    /// The org phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// When it was sent.
    pub timestamp: Option<Timestamp<'a>>,
    /// Media path.
    pub media_path: Option<Str<'a>>,
    /// Serialized message id.
    pub message_id: Option<Str<'a>>,
    /// Sender's name.
    pub sender_name: Option<Str<'a>>,
    /// Who triggered it (email).
    pub performed_by: Option<Str<'a>>,
    /// Sender phone: bare digits in ticket payloads.
    pub sender_phone: Option<Str<'a>>,
}

/// A Periskope ticket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Ticket<'a> {
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// Ticket id, e.g. `TICKET-12345`.
    pub ticket_id: Option<Str<'a>>,
    /// Subject.
    pub subject: Option<Str<'a>>,
    /// Status.
    pub status: Option<TicketStatus>,
    /// Priority, 0 to 4; sent as `2` or `"2"`.
    #[serde(default, deserialize_with = "opt_int")]
    pub priority: Option<i64>,
    /// Assignee email.
    pub assignee: Option<Str<'a>>,
    /// Who assigned it.
    pub assigned_by: Option<Str<'a>>,
    /// Who raised it.
    pub raised_by: Option<Str<'a>>,
    /// Due date.
    pub due_date: Option<Timestamp<'a>>,
    /// Creation time.
    pub created_at: Option<Timestamp<'a>>,
    /// Comma-separated labels.
    pub ticket_labels: Option<Str<'a>>,
    /// Quoted message id.
    pub quoted_message_id: Option<Str<'a>>,
    /// Custom properties: name → value.
    pub ticket_custom_properties: Option<Map<'a, Str<'a>>>,
    /// When it was closed.
    pub closed_at: Option<Timestamp<'a>>,
    /// Who closed it.
    pub closed_by: Option<Str<'a>>,
    /// Closing message.
    pub closed_message: Option<Str<'a>>,
    /// First assignment time.
    pub first_assigned_at: Option<Timestamp<'a>>,
    /// Deleted.
    pub is_deleted: Option<bool>,
}

open_enum! {
    /// A ticket's status.
    pub enum TicketStatus {
        /// `open`.
        Open = "open",
        /// `inprogress`.
        InProgress = "inprogress",
        /// `closed`.
        Closed = "closed",
        /// `archived`.
        Archived = "archived",
    }
}
