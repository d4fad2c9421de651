//! [`DedupKey`]: what makes two deliveries copies of one occurrence, per event kind.

use std::fmt::{self, Write as _};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{Event, EventData, Message, Timestamp, WebhookEvent};

/// The identity of one occurrence for de-duplication, e.g. the key of the third ack of a
/// message. Its parts are length-prefixed, so that no two lists of parts share a key.
///
/// It is built from ids in the event, which can contain phone numbers: its `Debug` shows only
/// its length, and the middleware never logs it. [`DedupKey::as_str`] is for stores.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey(String);

impl DedupKey {
    /// A key with this text (for [`KeyFn`] closures; keep it injective).
    pub fn new(key: impl Into<String>) -> Self {
        DedupKey(key.into())
    }

    /// The key's text, for a store to keep.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupKey({} bytes)", self.0.len())
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

/// One key per occurrence, from the occurrence's own fields, per event kind:
///
/// | events | key (after the event name) | why |
/// |---|---|---|
/// | `message.created`, `message.deleted` | `message_id` (else `unique_id`) | each happens once per message |
/// | `message.updated` | id, `updated_at` | one per edit |
/// | `message.ack.updated` | id, `ack` | `ack` only grows: one per value |
/// | `message.flagged` | id, `flag_metadata.flagged_at`, else `updated_at`, else the envelope `timestamp` | flag, unflag, flag again are three occurrences |
/// | `message.unflagged` | id, `updated_at`, else the envelope `timestamp` | as above |
/// | `message.ticket.attached` | id, `message_ticket_id`, `updated_at`, else the envelope `timestamp` | attached, detached, attached again |
/// | `reaction.*` | `reaction_id`, the emoji, the reaction's `timestamp`, else the envelope `timestamp` | 👍 → ❤️ → 👍 are three occurrences |
/// | `chat.notification.created` | `notification_id` | it names one action |
/// | `note.created` | `message_id` | a note is posted once |
/// | `ticket.created`, `ticket.deleted` | `ticket.ticket_id` | once per ticket |
/// | `ticket.updated` | `ticket.ticket_id`, the envelope `timestamp` | a ticket carries no update time |
/// | `org.phone.*` | `phone_id`, `updated_at`, else the envelope `timestamp`; for `org.phone.qr` also a digest of `qr_code` | one per change |
/// | `chat.created` | `chat_id` | once per chat |
/// | `chat.custom_properties.updated` | `chat_id`, `updated_at`, else the envelope `timestamp` | one per change |
///
/// The envelope `timestamp` is used only where the data has no time of its own: Periskope's
/// per-org-phone copies may differ in envelope fields (SPEC §11). Times are compared as
/// instants at their full precision (nanoseconds), so two spellings of one time are one key,
/// and two updates a microsecond apart are two.
///
/// An event missing a part of its key, and an unknown or undecodable event, is keyed by a
/// SHA-256 digest of its body read as JSON, which covers every member at every depth, in any
/// order, except two envelope fields that differ between copies of one occurrence: the
/// top-level `timestamp`, and `org_phone` (at the top level and in `data`; kept by
/// [`EventKeys::per_phone`]). A retry of the same bytes, the same members in another order,
/// and the copies sent through other org phones or at other times share the key; so do two
/// occurrences whose bodies differ only in those fields. A body that is not JSON is digested
/// byte for byte.
///
/// By default the org phone is not part of keys: a group message that arrives once per
/// connected org phone is handled once. [`EventKeys::per_phone`] keeps one copy per phone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventKeys {
    per_phone: bool,
}

impl EventKeys {
    /// Keys that include the org phone for message and reaction events, and in the digest.
    pub fn per_phone() -> Self {
        EventKeys { per_phone: true }
    }
}

impl KeyFn for EventKeys {
    fn key(&self, delivery: &WebhookEvent) -> DedupKey {
        self.occurrence(delivery.event()).unwrap_or_else(|| self.digest(delivery.body()))
    }
}

impl EventKeys {
    /// The key from the event's own fields; `None` when one is missing.
    fn occurrence(&self, event: &Event<'_>) -> Option<DedupKey> {
        let mut key = KeyBuilder::new(event.name());
        let envelope_time = event.timestamp.as_ref();
        // One arm per kind and no catch-all: a new kind does not compile until it has a key.
        match &event.data {
            EventData::MessageCreated(message) | EventData::MessageDeleted(message) => {
                self.message(&mut key, message)?;
            }
            EventData::MessageUpdated(message) => {
                self.message(&mut key, message)?;
                key.time(message.updated_at.as_ref())?;
            }
            EventData::MessageAckUpdated(message) => {
                self.message(&mut key, message)?;
                key.part(&message.ack?.code().to_string());
            }
            EventData::MessageFlagged(message) => {
                self.message(&mut key, message)?;
                let flagged_at = message.flag_metadata.as_ref().and_then(|flag| flag.flagged_at.as_ref());
                key.time(flagged_at.or(message.updated_at.as_ref()).or(envelope_time))?;
            }
            EventData::MessageUnflagged(message) => {
                self.message(&mut key, message)?;
                key.time(message.updated_at.as_ref().or(envelope_time))?;
            }
            EventData::MessageTicketAttached(message) => {
                self.message(&mut key, message)?;
                key.part(message.message_ticket_id.as_deref()?);
                key.time(message.updated_at.as_ref().or(envelope_time))?;
            }
            EventData::ReactionCreated(reaction) | EventData::ReactionUpdated(reaction) => {
                key.part(reaction.reaction_id.as_deref()?);
                key.optional(reaction.reaction.as_deref());
                key.time(reaction.timestamp.as_ref().or(envelope_time))?;
                if self.per_phone {
                    key.part(reaction.org_phone.as_deref()?);
                }
            }
            EventData::ChatNotificationCreated(notification) => {
                key.part(notification.notification_id.as_deref()?);
            }
            EventData::NoteCreated(note) => key.part(note.message_id.as_deref()?),
            EventData::TicketCreated(info) | EventData::TicketDeleted(info) => {
                key.part(info.ticket.as_ref()?.ticket_id.as_deref()?);
            }
            EventData::TicketUpdated(info) => {
                key.part(info.ticket.as_ref()?.ticket_id.as_deref()?);
                key.time(envelope_time)?;
            }
            EventData::OrgPhoneConnected(phone)
            | EventData::OrgPhoneDisconnected(phone)
            | EventData::OrgPhoneUpdated(phone) => {
                key.part(phone.phone_id.as_deref()?);
                key.time(phone.updated_at.as_ref().or(envelope_time))?;
            }
            EventData::OrgPhoneQr(phone) => {
                key.part(phone.phone_id.as_deref()?);
                key.time(phone.updated_at.as_ref().or(envelope_time))?;
                // A digest: the QR code links a device to the account, so it stays out of keys.
                key.optional(
                    phone.qr_code.as_deref().map(|code| hex(&Sha256::digest(code.as_bytes()))).as_deref(),
                );
            }
            EventData::ChatCreated(chat) => key.part(chat.chat_id.as_deref()?),
            EventData::ChatCustomPropertiesUpdated(chat) => {
                key.part(chat.chat_id.as_deref()?);
                key.time(chat.updated_at.as_ref().or(envelope_time))?;
            }
            EventData::Unknown { .. } | EventData::Undecodable { .. } => return None,
        }
        Some(key.finish())
    }

    fn message(&self, key: &mut KeyBuilder, message: &Message<'_>) -> Option<()> {
        key.part(message.message_id.as_deref().or(message.unique_id.as_deref())?);
        if self.per_phone {
            key.part(message.org_phone.as_deref()?);
        }
        Some(())
    }

    /// A digest of the body as JSON: object keys in sorted order, without the envelope
    /// `timestamp` and, unless keys are per phone, without `org_phone` at the top level and in
    /// `data`.
    fn digest(&self, body: &[u8]) -> DedupKey {
        let mut hasher = Sha256::new();
        match serde_json::from_slice::<Value>(body) {
            Ok(mut value) => {
                forget_copy_fields(&mut value, self.per_phone);
                canonical(&value, &mut hasher);
            }
            // The middleware decodes a body before keying it, so this is for direct callers.
            Err(_) => hasher.update(body),
        }
        DedupKey(format!("body|{}", hex(&hasher.finalize())))
    }
}

/// Removes the fields in which copies of one occurrence differ: the envelope `timestamp` (the
/// time of each copy's sending) and, unless `per_phone`, the org phone it went through.
fn forget_copy_fields(envelope: &mut Value, per_phone: bool) {
    if let Value::Object(members) = envelope {
        members.remove("timestamp");
        if per_phone {
            return;
        }
        members.remove("org_phone");
        if let Some(Value::Object(data)) = members.get_mut("data") {
            data.remove("org_phone");
        }
    }
}

/// Feeds `value` to `hasher` in one unambiguous form: a tag per type, lengths before strings
/// and collections, object members sorted by key.
fn canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(true) => hasher.update(b"t"),
        Value::Bool(false) => hasher.update(b"f"),
        Value::Number(number) => text(b'#', &number.to_string(), hasher),
        Value::String(string) => text(b's', string, hasher),
        Value::Array(items) => {
            hasher.update([b'[']);
            hasher.update((items.len() as u64).to_be_bytes());
            items.iter().for_each(|item| canonical(item, hasher));
        }
        Value::Object(members) => {
            let mut sorted: Vec<_> = members.iter().collect();
            sorted.sort_unstable_by_key(|(name, _)| *name);
            hasher.update([b'{']);
            hasher.update((sorted.len() as u64).to_be_bytes());
            for (name, member) in sorted {
                text(b'k', name, hasher);
                canonical(member, hasher);
            }
        }
    }
}

fn text(tag: u8, text: &str, hasher: &mut Sha256) {
    hasher.update([tag]);
    hasher.update((text.len() as u64).to_be_bytes());
    hasher.update(text.as_bytes());
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Writes `name` then each part as `|<byte length>:<text>`, an absent one as `|-`: parts may
/// contain any character, and no two lists of parts give one key.
struct KeyBuilder(String);

impl KeyBuilder {
    fn new(name: &str) -> Self {
        KeyBuilder(name.to_owned())
    }

    fn part(&mut self, part: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "|{}:{part}", part.len());
    }

    fn optional(&mut self, part: Option<&str>) {
        match part {
            Some(part) => self.part(part),
            None => self.0.push_str("|-"),
        }
    }

    /// The instant of `timestamp` to the nanosecond (`t`, Unix seconds, `.` and nine digits),
    /// or its text when it cannot be read (`x` and the text); `None` when there is no
    /// timestamp. Truncating would make two updates within one millisecond one occurrence.
    fn time(&mut self, timestamp: Option<&Timestamp<'_>>) -> Option<()> {
        let timestamp = timestamp?;
        match timestamp.parse() {
            Some(time) => self.part(&format!("t{}.{:09}", time.unix_seconds(), time.subsec_nanos())),
            None => self.part(&format!("x{timestamp}")),
        }
        Some(())
    }

    fn finish(self) -> DedupKey {
        DedupKey(self.0)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn key(keys: EventKeys, body: &str) -> String {
        keys.key(&WebhookEvent::decode(Bytes::from(body.to_owned())).unwrap()).0
    }

    #[test]
    fn message_keys_ignore_the_org_phone_unless_asked() {
        let via_phone_a = r#"{"event":"message.created","data":{"message_id":"m1","org_phone":"a@c.us"}}"#;
        let via_phone_b = r#"{"event":"message.created","data":{"message_id":"m1","org_phone":"b@c.us"}}"#;
        assert_eq!(key(EventKeys::default(), via_phone_a), "message.created|2:m1");
        assert_eq!(key(EventKeys::default(), via_phone_a), key(EventKeys::default(), via_phone_b));
        assert_ne!(key(EventKeys::per_phone(), via_phone_a), key(EventKeys::per_phone(), via_phone_b));
    }

    #[test]
    fn ack_updates_and_edits_are_distinct_occurrences() {
        let ack3 = r#"{"event":"message.ack.updated","data":{"message_id":"m1","ack":"3"}}"#;
        let ack4 = r#"{"event":"message.ack.updated","data":{"message_id":"m1","ack":4}}"#;
        assert_eq!(key(EventKeys::default(), ack3), "message.ack.updated|2:m1|1:3");
        assert_ne!(key(EventKeys::default(), ack3), key(EventKeys::default(), ack4));
        let edit =
            r#"{"event":"message.updated","data":{"message_id":"m1","updated_at":"2024-05-13 11:19:34+00"}}"#;
        let same_edit =
            r#"{"event":"message.updated","data":{"message_id":"m1","updated_at":"2024-05-13T11:19:34Z"}}"#;
        assert_eq!(key(EventKeys::default(), edit), key(EventKeys::default(), same_edit));
    }

    #[test]
    fn flag_unflag_flag_again_are_three_occurrences() {
        let flag = |at: &str| {
            format!(
                r#"{{"event":"message.flagged","data":{{"message_id":"m1","flag_metadata":{{"flagged_at":"{at}"}}}}}}"#
            )
        };
        let unflag =
            r#"{"event":"message.unflagged","data":{"message_id":"m1","updated_at":"2024-05-13T11:20:00Z"}}"#;
        let keys = [
            key(EventKeys::default(), &flag("2024-05-13T11:19:34Z")),
            key(EventKeys::default(), unflag),
            key(EventKeys::default(), &flag("2024-05-13T11:21:00Z")),
        ];
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2], "{keys:?}");
    }

    #[test]
    fn a_reaction_changed_back_and_forth_is_one_key_per_change() {
        let reaction = |emoji: &str, at: &str| {
            format!(
                r#"{{"event":"reaction.updated","data":{{"reaction_id":"r1","reaction":"{emoji}","timestamp":"{at}"}}}}"#
            )
        };
        let changes = [("👍", "11:00:00"), ("❤️", "11:00:05"), ("👍", "11:00:09"), ("❤️", "11:00:12")]
            .map(|(emoji, at)| key(EventKeys::default(), &reaction(emoji, &format!("2024-05-13T{at}Z"))));
        let distinct: std::collections::HashSet<_> = changes.iter().collect();
        assert_eq!(distinct.len(), 4, "{changes:?}");
    }

    #[test]
    fn parts_are_length_prefixed() {
        let reaction = |id: &str, emoji: &str| {
            format!(
                r#"{{"event":"reaction.created","data":{{"reaction_id":"{id}","reaction":"{emoji}","timestamp":1}}}}"#
            )
        };
        assert_ne!(
            key(EventKeys::default(), &reaction("r|x", "y")),
            key(EventKeys::default(), &reaction("r", "x|y"))
        );
        assert_ne!(
            key(EventKeys::default(), &reaction("r|1:x", "")),
            key(EventKeys::default(), &reaction("r", "x"))
        );
    }

    #[test]
    fn missing_ids_and_unknown_events_fall_back_to_a_digest() {
        let no_id = r#"{"event":"message.created","data":{"body":"hi"}}"#;
        let unknown = r#"{"event":"chat.label.updated","data":{}}"#;
        for body in [no_id, unknown] {
            let key = key(EventKeys::default(), body);
            assert!(key.starts_with("body|") && key.len() == 69, "{key}");
        }
        assert_ne!(key(EventKeys::default(), no_id), key(EventKeys::default(), unknown));
        let reordered =
            r#"{"data":{"body":"hi","org_phone":"b@c.us"},"org_phone":"b@c.us","event":"message.created"}"#;
        assert_eq!(key(EventKeys::default(), no_id), key(EventKeys::default(), reordered));
        assert_ne!(key(EventKeys::per_phone(), no_id), key(EventKeys::per_phone(), reordered));
    }

    #[test]
    fn debug_shows_no_id() {
        assert_eq!(format!("{:?}", DedupKey::new("message.created|9:919999912")), "DedupKey(27 bytes)");
    }
}
