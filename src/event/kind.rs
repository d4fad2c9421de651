//! [`EventKind`]: the 20 event names Periskope delivers.
//!
//! ```
//! use periskope_webhook::event::{EventKind, Family};
//!
//! assert_eq!(EventKind::from_name("ticket.updated"), EventKind::TicketUpdated);
//! assert_eq!(EventKind::TicketUpdated.as_str(), "ticket.updated");
//! assert_eq!(EventKind::from_name("chat.label.updated"), EventKind::Unknown);
//! assert_eq!(EventKind::ALL.len(), 20);
//! assert_eq!(EventKind::TicketUpdated.family(), Some(Family::Ticket));
//! assert_eq!(Family::Ticket.kinds().count(), 3);
//! ```

use std::fmt;

/// The kind of a delivery, from its `event` (or `event_type`) name.
///
/// A name this crate does not know is [`EventKind::Unknown`]; the event keeps the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// `chat.created`: a chat appeared on WhatsApp.
    ChatCreated,
    /// `chat.notification.created`: an action on a chat (member added, settings changed, ...).
    ChatNotificationCreated,
    /// `chat.custom_properties.updated`: a chat's custom properties changed.
    ChatCustomPropertiesUpdated,
    /// `message.created`: a message was sent or received.
    MessageCreated,
    /// `message.updated`: a message was edited or updated.
    MessageUpdated,
    /// `message.deleted`: a message was deleted on WhatsApp.
    MessageDeleted,
    /// `message.ack.updated`: a message's delivery or read status changed.
    MessageAckUpdated,
    /// `message.flagged`: a message was flagged.
    MessageFlagged,
    /// `message.unflagged`: a message was unflagged.
    MessageUnflagged,
    /// `message.ticket.attached`: a message was attached to a ticket.
    MessageTicketAttached,
    /// `reaction.created`: a reaction was added.
    ReactionCreated,
    /// `reaction.updated`: a reaction changed.
    ReactionUpdated,
    /// `ticket.created`: a ticket was created.
    TicketCreated,
    /// `ticket.updated`: a ticket's details changed.
    TicketUpdated,
    /// `ticket.deleted`: a ticket was deleted.
    TicketDeleted,
    /// `note.created`: a private note was posted in a chat.
    NoteCreated,
    /// `org.phone.connected`: an org phone connected.
    OrgPhoneConnected,
    /// `org.phone.disconnected`: an org phone disconnected.
    OrgPhoneDisconnected,
    /// `org.phone.updated`: an org phone's details changed.
    OrgPhoneUpdated,
    /// `org.phone.qr`: an org phone has a new QR code.
    OrgPhoneQr,
    /// A name this version of the crate does not know.
    Unknown,
}

impl EventKind {
    /// The 20 known kinds.
    pub const ALL: [EventKind; 20] = [
        EventKind::ChatCreated,
        EventKind::ChatNotificationCreated,
        EventKind::ChatCustomPropertiesUpdated,
        EventKind::MessageCreated,
        EventKind::MessageUpdated,
        EventKind::MessageDeleted,
        EventKind::MessageAckUpdated,
        EventKind::MessageFlagged,
        EventKind::MessageUnflagged,
        EventKind::MessageTicketAttached,
        EventKind::ReactionCreated,
        EventKind::ReactionUpdated,
        EventKind::TicketCreated,
        EventKind::TicketUpdated,
        EventKind::TicketDeleted,
        EventKind::NoteCreated,
        EventKind::OrgPhoneConnected,
        EventKind::OrgPhoneDisconnected,
        EventKind::OrgPhoneUpdated,
        EventKind::OrgPhoneQr,
    ];

    /// The kind named `name`, or [`EventKind::Unknown`].
    pub fn from_name(name: &str) -> EventKind {
        match name {
            "chat.created" => EventKind::ChatCreated,
            "chat.notification.created" => EventKind::ChatNotificationCreated,
            "chat.custom_properties.updated" => EventKind::ChatCustomPropertiesUpdated,
            "message.created" => EventKind::MessageCreated,
            "message.updated" => EventKind::MessageUpdated,
            "message.deleted" => EventKind::MessageDeleted,
            "message.ack.updated" => EventKind::MessageAckUpdated,
            "message.flagged" => EventKind::MessageFlagged,
            "message.unflagged" => EventKind::MessageUnflagged,
            "message.ticket.attached" => EventKind::MessageTicketAttached,
            "reaction.created" => EventKind::ReactionCreated,
            "reaction.updated" => EventKind::ReactionUpdated,
            "ticket.created" => EventKind::TicketCreated,
            "ticket.updated" => EventKind::TicketUpdated,
            "ticket.deleted" => EventKind::TicketDeleted,
            "note.created" => EventKind::NoteCreated,
            "org.phone.connected" => EventKind::OrgPhoneConnected,
            "org.phone.disconnected" => EventKind::OrgPhoneDisconnected,
            "org.phone.updated" => EventKind::OrgPhoneUpdated,
            "org.phone.qr" => EventKind::OrgPhoneQr,
            _ => EventKind::Unknown,
        }
    }

    /// The event name; `"unknown"` for [`EventKind::Unknown`] (the event itself keeps the name).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::ChatCreated => "chat.created",
            EventKind::ChatNotificationCreated => "chat.notification.created",
            EventKind::ChatCustomPropertiesUpdated => "chat.custom_properties.updated",
            EventKind::MessageCreated => "message.created",
            EventKind::MessageUpdated => "message.updated",
            EventKind::MessageDeleted => "message.deleted",
            EventKind::MessageAckUpdated => "message.ack.updated",
            EventKind::MessageFlagged => "message.flagged",
            EventKind::MessageUnflagged => "message.unflagged",
            EventKind::MessageTicketAttached => "message.ticket.attached",
            EventKind::ReactionCreated => "reaction.created",
            EventKind::ReactionUpdated => "reaction.updated",
            EventKind::TicketCreated => "ticket.created",
            EventKind::TicketUpdated => "ticket.updated",
            EventKind::TicketDeleted => "ticket.deleted",
            EventKind::NoteCreated => "note.created",
            EventKind::OrgPhoneConnected => "org.phone.connected",
            EventKind::OrgPhoneDisconnected => "org.phone.disconnected",
            EventKind::OrgPhoneUpdated => "org.phone.updated",
            EventKind::OrgPhoneQr => "org.phone.qr",
            EventKind::Unknown => "unknown",
        }
    }

    /// Whether this is one of the 20 known kinds.
    pub const fn is_known(self) -> bool {
        !matches!(self, EventKind::Unknown)
    }

    /// The family of objects this kind's `data` holds; `None` for [`EventKind::Unknown`].
    ///
    /// The one place that says which kinds share an object: the accessors
    /// ([`Event::message`](crate::Event::message), ...), the typed extractors and drift
    /// detection all follow it.
    pub const fn family(self) -> Option<Family> {
        Some(match self {
            EventKind::ChatCreated | EventKind::ChatCustomPropertiesUpdated => Family::Chat,
            EventKind::ChatNotificationCreated => Family::ChatNotification,
            EventKind::MessageCreated
            | EventKind::MessageUpdated
            | EventKind::MessageDeleted
            | EventKind::MessageAckUpdated
            | EventKind::MessageFlagged
            | EventKind::MessageUnflagged
            | EventKind::MessageTicketAttached => Family::Message,
            EventKind::ReactionCreated | EventKind::ReactionUpdated => Family::Reaction,
            EventKind::TicketCreated | EventKind::TicketUpdated | EventKind::TicketDeleted => Family::Ticket,
            EventKind::NoteCreated => Family::Note,
            EventKind::OrgPhoneConnected
            | EventKind::OrgPhoneDisconnected
            | EventKind::OrgPhoneUpdated
            | EventKind::OrgPhoneQr => Family::Phone,
            EventKind::Unknown => return None,
        })
    }
}

/// A family of event kinds whose `data` is the same object type, as [`EventKind::family`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Family {
    /// `chat.created`, `chat.custom_properties.updated`: a [`Chat`](crate::event::Chat).
    Chat,
    /// `chat.notification.created`: a [`ChatNotification`](crate::event::ChatNotification).
    ChatNotification,
    /// `message.*`: a [`Message`](crate::event::Message).
    Message,
    /// `reaction.*`: a [`Reaction`](crate::event::Reaction).
    Reaction,
    /// `ticket.*`: a [`TicketInfo`](crate::event::TicketInfo).
    Ticket,
    /// `note.created`: a [`Note`](crate::event::Note).
    Note,
    /// `org.phone.*`: a [`Phone`](crate::event::Phone).
    Phone,
}

impl Family {
    /// The kinds of this family, in [`EventKind::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = EventKind> {
        EventKind::ALL.into_iter().filter(move |kind| kind.family() == Some(self))
    }

    /// Whether `kind` belongs to this family.
    pub fn contains(self, kind: EventKind) -> bool {
        kind.family() == Some(self)
    }

    /// The family's event names, for messages: `message.*`, `chat.notification.created`, ...
    pub const fn names(self) -> &'static str {
        match self {
            Family::Chat => "chat.created or chat.custom_properties.updated",
            Family::ChatNotification => "chat.notification.created",
            Family::Message => "message.*",
            Family::Reaction => "reaction.*",
            Family::Ticket => "ticket.*",
            Family::Note => "note.created",
            Family::Phone => "org.phone.*",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), kind);
            assert!(kind.is_known());
        }
        assert_eq!(EventKind::from_name("unknown"), EventKind::Unknown);
        assert_eq!(EventKind::from_name("Message.Created"), EventKind::Unknown);
    }

    #[test]
    fn family_names_cover_exactly_their_kinds() {
        let families = [
            Family::Chat,
            Family::ChatNotification,
            Family::Message,
            Family::Reaction,
            Family::Ticket,
            Family::Note,
            Family::Phone,
        ];
        for family in families {
            for kind in family.kinds() {
                let name = kind.as_str();
                let named = family.names().split(" or ").any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == pattern,
                });
                assert!(named, "{name} is not named by {}", family.names());
            }
        }
        assert_eq!(families.iter().map(|family| family.kinds().count()).sum::<usize>(), EventKind::ALL.len());
        assert_eq!(EventKind::Unknown.family(), None);
    }

    #[test]
    fn each_kind_decodes_to_an_object_of_its_family() {
        for kind in EventKind::ALL {
            let body = format!(r#"{{"event":"{kind}","data":{{}}}}"#);
            let event = crate::Event::from_json(&body).unwrap();
            assert_eq!(event.data.object().map(|object| object.family()), kind.family(), "{kind}");
        }
    }
}
