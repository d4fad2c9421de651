//! Schema drift: what Periskope sent that the typed model does not know yet.
//!
//! ```
//! use bytes::Bytes;
//! use periskope_webhook::WebhookEvent;
//! use periskope_webhook::drift::Drift;
//!
//! let body = br#"{"event":"message.created","data":{"body":"hi","message_type":"sticker_pack",
//!     "media":{"size":10,"blurhash":"LEHV6n"}},"delivery_id":"d-1"}"#;
//! let event = WebhookEvent::decode(Bytes::from_static(body)).unwrap();
//! let drift = Drift::detect(&event);
//! assert_eq!(drift.unknown_fields, ["delivery_id", "data.media.blurhash"]);
//! assert_eq!(drift.unknown_values, [("data.message_type".to_owned(), "sticker_pack".to_owned())]);
//! ```
//!
//! Detection decodes the body a second time with a tracker of ignored fields, so it costs
//! about one more decode; it runs only when asked ([`Drift::detect`], or
//! [`PeriskopeWebhookLayer::report_drift`](crate::PeriskopeWebhookLayer::report_drift)), and
//! costs nothing otherwise.

use std::fmt::Write as _;

use serde_ignored::Path;

use crate::event::is_identifier;
use crate::event::open_enum::OpenValue;
use crate::event::{self, ObjectRef, WebhookEvent};

/// Fields and enum values of one delivery that the typed model does not know.
///
/// Paths are written `data.media.blurhash`, with `[i]` for array items; map keys that are not
/// plain identifiers (WhatsApp ids, emails, label ids) are written `*`, so that paths carry no
/// phone number and group well: `data.members.*.verified_name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drift {
    /// Paths of fields that were sent but are not part of the model (and were ignored).
    pub unknown_fields: Vec<String>,
    /// `(path, value)` of enumeration values the model kept in an `Other` arm.
    pub unknown_values: Vec<(String, String)>,
}

impl Drift {
    /// Whether nothing unknown was found.
    pub fn is_empty(&self) -> bool {
        self.unknown_fields.is_empty() && self.unknown_values.is_empty()
    }

    /// Finds the unknown fields and enumeration values of `delivery`.
    pub fn detect(delivery: &WebhookEvent) -> Drift {
        let mut drift = Drift { unknown_fields: unknown_fields(delivery), unknown_values: Vec::new() };
        drift.collect_values(delivery);
        drift
    }

    fn value(&mut self, path: &str, value: Option<&impl OpenValue>) {
        if let Some(text) = value.and_then(OpenValue::unknown_text) {
            self.unknown_values.push((path.to_owned(), text));
        }
    }

    fn collect_values(&mut self, delivery: &WebhookEvent) {
        let Some(object) = delivery.event().data.object() else {
            return;
        };
        // Exhaustive: a new family does not compile until its open enumerations are listed here.
        match object {
            ObjectRef::Message(message) => {
                self.value("data.message_type", message.message_type.as_ref());
                self.value("data.ack", message.ack.as_ref());
            }
            ObjectRef::Reaction(reaction) => self.value("data.ack", reaction.ack.as_ref()),
            ObjectRef::Note(note) => {
                self.value("data.message_type", note.message_type.as_ref());
                self.value("data.ack", note.ack.as_ref());
            }
            ObjectRef::Chat(chat) => self.value("data.chat_type", chat.chat_type.as_ref()),
            ObjectRef::ChatNotification(notification) => {
                self.value("data.type", notification.notification_type.as_ref())
            }
            ObjectRef::Ticket(info) => {
                self.value(
                    "data.chat.chat_type",
                    info.chat.as_ref().and_then(|chat| chat.chat_type.as_ref()),
                );
                self.value(
                    "data.ticket.status",
                    info.ticket.as_ref().and_then(|ticket| ticket.status.as_ref()),
                );
            }
            ObjectRef::Phone(phone) => self.value("data.wa_state", phone.wa_state.as_ref()),
        }
    }
}

/// The paths of the fields the typed model skipped, envelope first.
fn unknown_fields(delivery: &WebhookEvent) -> Vec<String> {
    let mut fields = Vec::new();
    if let Ok(text) = std::str::from_utf8(delivery.body()) {
        event::ignored_fields(text, delivery.kind(), |prefix, path| fields.push(render(prefix, &path)));
    }
    fields
}

fn render(prefix: &str, path: &Path<'_>) -> String {
    let mut out = prefix.to_owned();
    write_path(&mut out, path);
    out
}

fn write_path(out: &mut String, path: &Path<'_>) {
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            write_path(out, parent);
            // Writing to a String cannot fail.
            let _ = write!(out, "[{index}]");
        }
        Path::Map { parent, key } => {
            write_path(out, parent);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(if is_identifier(key) { key } else { "*" });
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            write_path(out, parent)
        }
    }
}
