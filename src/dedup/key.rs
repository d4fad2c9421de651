//! [`DedupKey`]: what makes two deliveries the same, per event kind.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

use crate::event::{EventData, Timestamp, WebhookEvent};

/// The identity of a delivery for de-duplication, e.g.
/// `message.ack.updated|true_1203@g.us_3EB0_9190@c.us|ack=3`.
///
/// It is built from ids in the event, which can contain phone numbers: the middleware never
/// logs it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(String);

impl DedupKey {
    /// A key with this text.
    pub fn new(key: impl Into<String>) -> Self {
        DedupKey(key.into())
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DedupKey").field(&self.0).finish()
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Derives the [`DedupKey`] of a delivery. Implemented for [`EventKeys`] and for closures
/// `Fn(&WebhookEvent) -> DedupKey`.
pub trait KeyFn: Clone {
    /// The key of `event`.
    fn key(&self, event: &WebhookEvent) -> DedupKey;
}

impl<F> KeyFn for F
where
    F: Fn(&WebhookEvent) -> DedupKey + Clone,
{
    fn key(&self, event: &WebhookEvent) -> DedupKey {
        self(event)
    }
}

/// The keys Periskope's payloads suggest, per event kind:
///
/// | events | key |
/// |---|---|
/// | `message.*` | name, `message_id` (else `unique_id`); `ack` for `message.ack.updated`; `updated_at` for `message.updated` |
/// | `reaction.*` | name, `reaction_id`, the emoji |
/// | `chat.notification.created` | `notification_id` |
/// | `note.created` | `message_id` |
/// | `ticket.*` | name, `ticket_id`, the envelope's `timestamp` |
/// | `org.phone.*` | name, `phone_id`, `updated_at` |
/// | `chat.*` | name, `chat_id`, `updated_at`, the envelope's `timestamp` |
///
/// An event missing a part of its key, and an unknown or undecodable event, is keyed by the
/// SHA-256 of its body, which still catches a retry of the same bytes.
///
/// By default the org phone is not part of message keys: a group message that arrives once per
/// connected org phone is handled once. [`EventKeys::per_phone`] keeps one copy per phone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventKeys {
    per_phone: bool,
}

impl EventKeys {
    /// Keys that include the org phone for message and reaction events.
    pub fn per_phone() -> Self {
        EventKeys { per_phone: true }
    }
}

impl KeyFn for EventKeys {
    fn key(&self, delivery: &WebhookEvent) -> DedupKey {
        self.ids(delivery).unwrap_or_else(|| body_key(delivery))
    }
}

impl EventKeys {
    fn ids(&self, delivery: &WebhookEvent) -> Option<DedupKey> {
        let event = delivery.event();
        let mut key = KeyBuilder::new(event.name());
        match &event.data {
            EventData::ChatNotificationCreated(notification) => {
                key.part(notification.notification_id.as_deref()?)
            }
            EventData::NoteCreated(note) => key.part(note.message_id.as_deref()?),
            EventData::ReactionCreated(reaction) | EventData::ReactionUpdated(reaction) => {
                key.part(reaction.reaction_id.as_deref()?);
                key.part(reaction.reaction.as_deref().unwrap_or(""));
                if self.per_phone {
                    key.part(reaction.org_phone.as_deref()?);
                }
            }
            EventData::TicketCreated(info)
            | EventData::TicketUpdated(info)
            | EventData::TicketDeleted(info) => {
                key.part(info.ticket.as_ref()?.ticket_id.as_deref()?);
                key.timestamp(event.timestamp.as_ref()?);
            }
            EventData::OrgPhoneConnected(phone)
            | EventData::OrgPhoneDisconnected(phone)
            | EventData::OrgPhoneUpdated(phone)
            | EventData::OrgPhoneQr(phone) => {
                key.part(phone.phone_id.as_deref()?);
                key.timestamp(phone.updated_at.as_ref()?);
            }
            EventData::ChatCreated(chat) | EventData::ChatCustomPropertiesUpdated(chat) => {
                key.part(chat.chat_id.as_deref()?);
                key.optional_timestamp(chat.updated_at.as_ref());
                key.optional_timestamp(event.timestamp.as_ref());
            }
            data => {
                let message = event.message()?;
                key.part(message.message_id.as_deref().or(message.unique_id.as_deref())?);
                match data {
                    EventData::MessageAckUpdated(_) => key.labelled("ack", &message.ack?.code().to_string()),
                    EventData::MessageUpdated(_) => key.timestamp(message.updated_at.as_ref()?),
                    _ => {}
                }
                if self.per_phone {
                    key.part(message.org_phone.as_deref()?);
                }
            }
        }
        Some(key.finish())
    }
}

fn body_key(delivery: &WebhookEvent) -> DedupKey {
    let digest = Sha256::digest(delivery.body());
    let mut key = String::with_capacity(5 + 64);
    key.push_str("body|");
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(key, "{byte:02x}");
    }
    DedupKey(key)
}

struct KeyBuilder(String);

impl KeyBuilder {
    fn new(name: &str) -> Self {
        KeyBuilder(name.to_owned())
    }

    fn part(&mut self, part: &str) {
        self.0.push('|');
        self.0.push_str(part);
    }

    fn labelled(&mut self, label: &str, part: &str) {
        self.0.push('|');
        self.0.push_str(label);
        self.0.push('=');
        self.0.push_str(part);
    }

    fn timestamp(&mut self, timestamp: &Timestamp<'_>) {
        // The instant, not the text, so that two spellings of one time are one key.
        match timestamp.unix_millis() {
            Some(millis) => self.labelled("t", &millis.to_string()),
            None => self.labelled("t", &timestamp.to_string()),
        }
    }

    fn optional_timestamp(&mut self, timestamp: Option<&Timestamp<'_>>) {
        match timestamp {
            Some(timestamp) => self.timestamp(timestamp),
            None => self.part(""),
        }
    }

    fn finish(self) -> DedupKey {
        DedupKey(self.0)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn key(keys: EventKeys, body: &'static str) -> String {
        keys.key(&WebhookEvent::decode(Bytes::from_static(body.as_bytes())).unwrap()).0
    }

    #[test]
    fn message_keys_ignore_the_org_phone_unless_asked() {
        let via_phone_a = r#"{"event":"message.created","data":{"message_id":"m1","org_phone":"a@c.us"}}"#;
        let via_phone_b = r#"{"event":"message.created","data":{"message_id":"m1","org_phone":"b@c.us"}}"#;
        assert_eq!(key(EventKeys::default(), via_phone_a), "message.created|m1");
        assert_eq!(key(EventKeys::default(), via_phone_a), key(EventKeys::default(), via_phone_b));
        assert_ne!(key(EventKeys::per_phone(), via_phone_a), key(EventKeys::per_phone(), via_phone_b));
    }

    #[test]
    fn ack_updates_and_edits_are_distinct_deliveries() {
        let ack3 = r#"{"event":"message.ack.updated","data":{"message_id":"m1","ack":"3"}}"#;
        let ack4 = r#"{"event":"message.ack.updated","data":{"message_id":"m1","ack":4}}"#;
        assert_eq!(key(EventKeys::default(), ack3), "message.ack.updated|m1|ack=3");
        assert_ne!(key(EventKeys::default(), ack3), key(EventKeys::default(), ack4));
        let edit =
            r#"{"event":"message.updated","data":{"message_id":"m1","updated_at":"2024-05-13 11:19:34+00"}}"#;
        let same_edit =
            r#"{"event":"message.updated","data":{"message_id":"m1","updated_at":"2024-05-13T11:19:34Z"}}"#;
        assert_eq!(key(EventKeys::default(), edit), key(EventKeys::default(), same_edit));
    }

    #[test]
    fn other_families_use_their_ids() {
        let reaction = r#"{"event":"reaction.updated","data":{"reaction_id":"r1","reaction":"👍"}}"#;
        assert_eq!(key(EventKeys::default(), reaction), "reaction.updated|r1|👍");
        let ticket = r#"{"event":"ticket.updated","data":{"ticket":{"ticket_id":"T-1"}},"timestamp":"2025-01-20T07:51:48.209+00:00"}"#;
        assert_eq!(key(EventKeys::default(), ticket), "ticket.updated|T-1|t=1737359508209");
        let note = r#"{"event":"note.created","data":{"message_id":"n1"}}"#;
        assert_eq!(key(EventKeys::default(), note), "note.created|n1");
    }

    #[test]
    fn missing_ids_and_unknown_events_fall_back_to_the_body() {
        let no_id = r#"{"event":"message.created","data":{"body":"hi"}}"#;
        let unknown = r#"{"event":"chat.label.updated","data":{}}"#;
        for body in [no_id, unknown] {
            let key = key(EventKeys::default(), body);
            assert!(key.starts_with("body|") && key.len() == 69, "{key}");
        }
        assert_ne!(key(EventKeys::default(), no_id), key(EventKeys::default(), unknown));
    }
}
