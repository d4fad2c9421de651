//! Property tests: no input panics the decoder, and every event survives serialise-then-decode.

use std::path::Path;

use bytes::Bytes;
use periskope_webhook::event::{
    Ack, Chat, ChatMember, ChatNotification, ChatType, DeliveryInfo, Dimensions, Event, EventData, EventKind,
    FlagMetadata, Links, Map, Media, Message, MessageType, Note, NotificationType, Phone, RawJson, Reaction,
    Str, Ticket, TicketInfo, TicketMessage, TicketStatus, Timestamp, WaId, WaState, WebhookEvent,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

fn config() -> Config {
    // 256 cases unless PROPTEST_CASES says otherwise; no regression files: this suite must not
    // write into the source tree.
    Config { failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------------------------------------
// Leaf strategies.
// ---------------------------------------------------------------------------------------------

/// Strings: identifiers, arbitrary printable Unicode, any characters, and JSON's escape cases.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9@._:+-]{0,16}",
        2 => "\\PC{0,12}",
        1 => ".{0,8}",
        2 => prop::sample::select(vec![
            "", "\"", "\\", "\"quoted\" \\ back", "line\nbreak\ttab\r", "\u{0}\u{1f}\u{7f}", "caf\u{e9}", "😀👍🏽",
            "\u{2028}\u{2029}", "</script>", "[]", "null", "{}", " ", "日本語",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn str_() -> BoxedStrategy<Str<'static>> {
    text().prop_map(Str::from).boxed()
}

fn opt_str() -> BoxedStrategy<Option<Str<'static>>> {
    proptest::option::of(str_()).boxed()
}

fn opt_bool() -> BoxedStrategy<Option<bool>> {
    proptest::option::of(any::<bool>()).boxed()
}

fn opt_int() -> BoxedStrategy<Option<i64>> {
    proptest::option::of(prop_oneof![-5i64..100, any::<i64>()]).boxed()
}

/// Floats that print and parse back exactly (quarters within a million).
fn opt_float() -> BoxedStrategy<Option<f64>> {
    proptest::option::of(
        (-1_000_000i32..1_000_000, 0u8..4)
            .prop_map(|(whole, quarter)| f64::from(whole) + f64::from(quarter) * 0.25),
    )
    .boxed()
}

fn strs() -> BoxedStrategy<Option<Vec<Str<'static>>>> {
    proptest::option::of(prop::collection::vec(str_(), 0..4)).boxed()
}

fn timestamp() -> BoxedStrategy<Timestamp<'static>> {
    prop_oneof![
        prop::sample::select(vec![
            "2024-05-13 11:22:14+00",
            "2025-01-11T11:52:27.231+00:00",
            "2024-12-15T11:47:26.668505+00:00",
            "2025-01-17T08:44:02.6+00:00",
            "2024-05-13T17:27:15+00:00",
            "2025-08-15T00:00:00Z",
            "2024-05-13T17:27:15+05:30",
            "next tuesday",
        ])
        .prop_map(Timestamp::from),
        text().prop_map(Timestamp::from),
        prop_oneof![0i64..2_000_000_000_000, any::<i64>()].prop_map(Timestamp::Number),
    ]
    .boxed()
}

fn opt_timestamp() -> BoxedStrategy<Option<Timestamp<'static>>> {
    proptest::option::of(timestamp()).boxed()
}

fn map_of<V: std::fmt::Debug + Clone + 'static>(
    value: impl Strategy<Value = V> + 'static,
) -> BoxedStrategy<Option<Map<'static, V>>> {
    proptest::option::of(
        prop::collection::vec((text(), value), 0..4)
            .prop_map(|pairs| pairs.into_iter().collect::<Map<'static, V>>()),
    )
    .boxed()
}

fn ack() -> BoxedStrategy<Option<Ack>> {
    proptest::option::of(prop_oneof![4 => -1i64..=7, 1 => any::<i64>()].prop_map(Ack::from_code)).boxed()
}

/// An open enumeration: one of its known values, or any other text (kept in `Other`).
fn open_enum<T>(known: Vec<T>) -> BoxedStrategy<Option<T>>
where
    T: Clone + std::fmt::Debug + for<'s> From<&'s str> + 'static,
{
    proptest::option::of(prop_oneof![prop::sample::select(known), text().prop_map(|t| T::from(t.as_str()))])
        .boxed()
}

fn message_type() -> BoxedStrategy<Option<MessageType>> {
    open_enum(MessageType::KNOWN.to_vec())
}

fn chat_type() -> BoxedStrategy<Option<ChatType>> {
    open_enum(ChatType::KNOWN.to_vec())
}

fn ticket_status() -> BoxedStrategy<Option<TicketStatus>> {
    open_enum(TicketStatus::KNOWN.to_vec())
}

fn wa_state() -> BoxedStrategy<Option<WaState>> {
    open_enum(WaState::KNOWN.to_vec())
}

fn notification_type() -> BoxedStrategy<Option<NotificationType>> {
    open_enum(NotificationType::KNOWN.to_vec())
}

/// Any JSON value, nested a few levels.
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Raw JSON that is not `null` (an `Option<RawJson>` holding `null` reads back as `None`).
fn raw_json() -> BoxedStrategy<RawJson<'static>> {
    json_value()
        .prop_filter("not null", |value| !value.is_null())
        .prop_map(|value| RawJson::from_value(&value).expect("a Value serialises"))
        .boxed()
}

fn opt_raw_json() -> BoxedStrategy<Option<RawJson<'static>>> {
    proptest::option::of(raw_json()).boxed()
}

fn wa_id() -> BoxedStrategy<Option<WaId<'static>>> {
    proptest::option::of(
        (opt_str(), opt_bool(), opt_str(), opt_str()).prop_map(|(id, from_me, remote, serialized)| WaId {
            id,
            from_me,
            remote,
            serialized,
        }),
    )
    .boxed()
}

fn links() -> BoxedStrategy<Option<Links<'static>>> {
    proptest::option::of(prop_oneof![
        prop::collection::vec(raw_json(), 0..3).prop_map(Links::List),
        // A string holding an array reads back as a list; keep the text arm to other strings.
        text()
            .prop_filter("not an array", |t| serde_json::from_str::<Vec<Value>>(t).is_err())
            .prop_map(|t| Links::Text(Str::from(t))),
    ])
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Object strategies.
// ---------------------------------------------------------------------------------------------

fn media() -> BoxedStrategy<Option<Media<'static>>> {
    let dimensions = proptest::option::of(
        (opt_int(), opt_int(), opt_float()).prop_map(|(width, height, ar)| Dimensions { width, height, ar }),
    );
    proptest::option::of(
        (opt_str(), opt_str(), opt_str(), opt_int(), dimensions, opt_str(), opt_bool()).prop_map(
            |(path, mimetype, filename, size, dimensions, filedata, compress)| Media {
                path,
                mimetype,
                filename,
                size,
                dimensions,
                filedata,
                compress,
                ..Media::default()
            },
        ),
    )
    .boxed()
}

fn delivery_info() -> BoxedStrategy<Option<DeliveryInfo<'static>>> {
    proptest::option::of(
        (map_of(any::<i64>()), map_of(0i64..2_000_000_000_000), strs(), opt_int(), opt_int()).prop_map(
            |(delivered, read, pending, delivered_count, read_count)| DeliveryInfo {
                delivered,
                read,
                pending,
                delivered_count,
                read_count,
            },
        ),
    )
    .boxed()
}

fn flag_metadata() -> BoxedStrategy<Option<FlagMetadata<'static>>> {
    proptest::option::of((opt_bool(), opt_str(), opt_timestamp(), opt_str()).prop_map(
        |(status, response_type, flagged_at, flagged_by)| FlagMetadata {
            status,
            response_type,
            flagged_at,
            flagged_by,
            ..FlagMetadata::default()
        },
    ))
    .boxed()
}

fn reaction() -> BoxedStrategy<Reaction<'static>> {
    (
        (opt_str(), opt_str(), opt_str(), opt_str(), ack(), wa_id()),
        (
            opt_int(),
            opt_str(),
            opt_str(),
            opt_bool(),
            opt_str(),
            opt_timestamp(),
            wa_id(),
            opt_str(),
            opt_str(),
        ),
    )
        .prop_map(
            |(
                (org_id, org_phone, chat_id, message_id, ack, id),
                (orphan, orphan_reason, emoji, read, reaction_id, timestamp, msg_id, sender_id, unique_id),
            )| {
                Reaction {
                    org_id,
                    org_phone,
                    chat_id,
                    message_id,
                    ack,
                    id,
                    orphan,
                    orphan_reason,
                    reaction: emoji,
                    read,
                    reaction_id,
                    timestamp,
                    msg_id,
                    sender_id,
                    unique_id,
                }
            },
        )
        .boxed()
}

fn message() -> BoxedStrategy<Message<'static>> {
    (
        (opt_str(), opt_str(), opt_str(), ack(), wa_id(), opt_str(), opt_str(), opt_float(), opt_int()),
        (opt_bool(), opt_bool(), links(), media(), message_type(), strs(), opt_raw_json(), opt_timestamp()),
        (
            delivery_info(),
            flag_metadata(),
            map_of(map_of(str_()).prop_map(Option::unwrap_or_default)),
            proptest::option::of(prop::collection::vec(reaction(), 0..2)),
            opt_bool(),
            opt_raw_json(),
            opt_timestamp(),
            opt_str(),
        ),
    )
        .prop_map(
            |(
                (message_id, org_id, chat_id, ack, id, author, body, duration, forwarding_score),
                (from_me, has_media, links, media, message_type, mentioned_ids, raw_data, timestamp),
                (
                    delivery_info,
                    flag_metadata,
                    poll_results,
                    reactions,
                    is_private_note,
                    location,
                    updated_at,
                    prev_body,
                ),
            )| {
                Message {
                    message_id,
                    org_id,
                    chat_id,
                    ack,
                    id,
                    author,
                    body,
                    duration,
                    forwarding_score,
                    from_me,
                    has_media,
                    links,
                    media: media.map(Box::new),
                    message_type,
                    mentioned_ids,
                    raw_data,
                    timestamp,
                    delivery_info: delivery_info.map(Box::new),
                    flag_metadata: flag_metadata.map(Box::new),
                    poll_results,
                    reactions,
                    is_private_note,
                    location,
                    updated_at,
                    prev_body,
                    ..Message::default()
                }
            },
        )
        .boxed()
}

fn chat_member() -> BoxedStrategy<ChatMember<'static>> {
    (opt_str(), opt_str(), opt_bool(), opt_bool(), opt_bool(), opt_str(), opt_str())
        .prop_map(
            |(
                contact_id,
                contact_name,
                is_admin,
                is_super_admin,
                is_internal,
                contact_color,
                contact_labels,
            )| {
                ChatMember {
                    contact_id,
                    contact_name,
                    is_admin,
                    is_super_admin,
                    is_internal,
                    contact_color,
                    contact_labels,
                    ..ChatMember::default()
                }
            },
        )
        .boxed()
}

fn chat() -> BoxedStrategy<Chat<'static>> {
    let latest =
        proptest::option::of((opt_str(), ack(), opt_timestamp()).prop_map(|(body, ack, timestamp)| {
            Box::new(Message { body, ack, timestamp, ..Message::default() })
        }));
    (
        (opt_str(), opt_str(), opt_str(), chat_type(), map_of(chat_member()), map_of(any::<bool>())),
        (opt_timestamp(), opt_timestamp(), opt_timestamp(), map_of(str_()), opt_int(), opt_bool()),
        (latest, opt_raw_json(), strs(), opt_str()),
    )
        .prop_map(
            |(
                (chat_id, chat_name, org_phone, chat_type, members, label_ids),
                (created_at, updated_at, closed_at, custom_properties, member_count, is_muted),
                (latest_message, group_metadata, common_chats, chat_labels),
            )| {
                Chat {
                    chat_id,
                    chat_name,
                    org_phone,
                    chat_type,
                    members,
                    label_ids,
                    created_at,
                    updated_at,
                    closed_at,
                    custom_properties,
                    member_count,
                    is_muted,
                    latest_message,
                    group_metadata,
                    common_chats,
                    chat_labels,
                    ..Chat::default()
                }
            },
        )
        .boxed()
}

fn chat_notification() -> BoxedStrategy<ChatNotification<'static>> {
    (
        opt_str(),
        opt_str(),
        opt_str(),
        opt_str(),
        wa_id(),
        strs(),
        notification_type(),
        opt_timestamp(),
        opt_raw_json(),
    )
        .prop_map(|(notification_id, chat_id, author, body, id, recipient_ids, kind, timestamp, metadata)| {
            ChatNotification {
                notification_id,
                chat_id,
                author,
                body,
                id,
                recipient_ids,
                notification_type: kind,
                timestamp,
                metadata,
                ..ChatNotification::default()
            }
        })
        .boxed()
}

fn note() -> BoxedStrategy<Note<'static>> {
    (
        (opt_str(), ack(), opt_str(), opt_bool(), message_type(), opt_timestamp()),
        (opt_timestamp(), opt_str(), strs(), media(), opt_bool(), opt_bool()),
    )
        .prop_map(
            |(
                (message_id, ack, body, from_me, message_type, timestamp),
                (updated_at, performed_by, mentioned_ids, media, is_private_note, is_deleted),
            )| {
                Note {
                    message_id,
                    ack,
                    body,
                    from_me,
                    message_type,
                    timestamp,
                    updated_at,
                    performed_by,
                    mentioned_ids,
                    media,
                    is_private_note,
                    is_deleted,
                    ..Note::default()
                }
            },
        )
        .boxed()
}

fn ticket_message() -> BoxedStrategy<TicketMessage<'static>> {
    (opt_str(), opt_str(), opt_timestamp(), opt_str(), opt_str(), opt_str())
        .prop_map(|(body, chat_id, timestamp, media_path, sender_name, sender_phone)| TicketMessage {
            body,
            chat_id,
            timestamp,
            media_path,
            sender_name,
            sender_phone,
            ..TicketMessage::default()
        })
        .boxed()
}

fn ticket() -> BoxedStrategy<Ticket<'static>> {
    (
        opt_str(),
        opt_str(),
        ticket_status(),
        opt_int(),
        opt_str(),
        opt_timestamp(),
        opt_timestamp(),
        map_of(str_()),
        opt_bool(),
    )
        .prop_map(
            |(ticket_id, subject, status, priority, assignee, due_date, created_at, custom, is_deleted)| {
                Ticket {
                    ticket_id,
                    subject,
                    status,
                    priority,
                    assignee,
                    due_date,
                    created_at,
                    ticket_custom_properties: custom,
                    is_deleted,
                    ..Ticket::default()
                }
            },
        )
        .boxed()
}

fn ticket_info() -> BoxedStrategy<TicketInfo<'static>> {
    (
        proptest::option::of(chat()),
        proptest::option::of(ticket_message()),
        proptest::option::of(ticket()),
        proptest::option::of(prop::collection::vec(ticket_message(), 0..3)),
    )
        .prop_map(|(chat, message, ticket, attached_messages)| TicketInfo {
            chat,
            message,
            ticket,
            attached_messages,
        })
        .boxed()
}

fn phone() -> BoxedStrategy<Phone<'static>> {
    (
        (opt_str(), opt_str(), opt_str(), wa_state(), opt_str(), opt_bool()),
        (opt_timestamp(), opt_timestamp(), map_of(any::<bool>()), strs(), opt_bool()),
    )
        .prop_map(
            |(
                (phone_id, org_phone, phone_name, wa_state, qr_code, is_ready),
                (created_at, updated_at, label_ids, labels, is_browser_open),
            )| {
                Phone {
                    phone_id,
                    org_phone,
                    phone_name,
                    wa_state,
                    qr_code,
                    is_ready,
                    created_at,
                    updated_at,
                    label_ids,
                    labels,
                    is_browser_open,
                    ..Phone::default()
                }
            },
        )
        .boxed()
}

/// Typed data for a known kind.
fn data_for(kind: EventKind) -> BoxedStrategy<EventData<'static>> {
    match kind {
        EventKind::ChatCreated => chat().prop_map(|object| EventData::ChatCreated(object.into())).boxed(),
        EventKind::ChatNotificationCreated => {
            chat_notification().prop_map(|object| EventData::ChatNotificationCreated(object.into())).boxed()
        }
        EventKind::ChatCustomPropertiesUpdated => {
            chat().prop_map(|object| EventData::ChatCustomPropertiesUpdated(object.into())).boxed()
        }
        EventKind::MessageCreated => {
            message().prop_map(|object| EventData::MessageCreated(object.into())).boxed()
        }
        EventKind::MessageUpdated => {
            message().prop_map(|object| EventData::MessageUpdated(object.into())).boxed()
        }
        EventKind::MessageDeleted => {
            message().prop_map(|object| EventData::MessageDeleted(object.into())).boxed()
        }
        EventKind::MessageAckUpdated => {
            message().prop_map(|object| EventData::MessageAckUpdated(object.into())).boxed()
        }
        EventKind::MessageFlagged => {
            message().prop_map(|object| EventData::MessageFlagged(object.into())).boxed()
        }
        EventKind::MessageUnflagged => {
            message().prop_map(|object| EventData::MessageUnflagged(object.into())).boxed()
        }
        EventKind::MessageTicketAttached => {
            message().prop_map(|object| EventData::MessageTicketAttached(object.into())).boxed()
        }
        EventKind::ReactionCreated => {
            reaction().prop_map(|object| EventData::ReactionCreated(object.into())).boxed()
        }
        EventKind::ReactionUpdated => {
            reaction().prop_map(|object| EventData::ReactionUpdated(object.into())).boxed()
        }
        EventKind::TicketCreated => {
            ticket_info().prop_map(|object| EventData::TicketCreated(object.into())).boxed()
        }
        EventKind::TicketUpdated => {
            ticket_info().prop_map(|object| EventData::TicketUpdated(object.into())).boxed()
        }
        EventKind::TicketDeleted => {
            ticket_info().prop_map(|object| EventData::TicketDeleted(object.into())).boxed()
        }
        EventKind::NoteCreated => note().prop_map(|object| EventData::NoteCreated(object.into())).boxed(),
        EventKind::OrgPhoneConnected => {
            phone().prop_map(|object| EventData::OrgPhoneConnected(object.into())).boxed()
        }
        EventKind::OrgPhoneDisconnected => {
            phone().prop_map(|object| EventData::OrgPhoneDisconnected(object.into())).boxed()
        }
        EventKind::OrgPhoneUpdated => {
            phone().prop_map(|object| EventData::OrgPhoneUpdated(object.into())).boxed()
        }
        EventKind::OrgPhoneQr => phone().prop_map(|object| EventData::OrgPhoneQr(object.into())).boxed(),
        other => panic!("no typed data for {other:?}"),
    }
}

fn unknown_name() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "chat.label.updated",
            "org.created",
            "reaction.added",
            "",
            "Message.Created"
        ])
        .prop_map(str::to_owned),
        text(),
    ]
    .prop_filter("not a known name", |name| !EventKind::from_name(name).is_known())
    .boxed()
}

/// Events of every kind, typed, plus unknown events with raw data.
fn event() -> BoxedStrategy<Event<'static>> {
    let typed = prop::sample::select(EventKind::ALL.to_vec()).prop_flat_map(data_for);
    let unknown = (unknown_name(), prop_oneof![Just(RawJson::NULL), raw_json()])
        .prop_map(|(name, data)| EventData::Unknown { name: Str::from(name), data });
    let data = prop_oneof![6 => typed, 1 => unknown];
    let previous = proptest::option::of(
        prop::collection::vec((text(), json_value()), 0..4)
            .prop_map(|pairs| RawJson::from_value(&Value::Object(pairs.into_iter().collect())).unwrap()),
    );
    (data, opt_str(), opt_timestamp(), previous)
        .prop_map(|(data, org_id, timestamp, previous)| {
            let mut event = Event::new(data);
            if let Some(org_id) = org_id {
                event = event.with_org_id(org_id);
            }
            if let Some(timestamp) = timestamp {
                event = event.with_timestamp(timestamp);
            }
            if let Some(previous) = previous {
                event = event.with_previous_attributes(previous);
            }
            event
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Envelope-shaped and arbitrary inputs.
// ---------------------------------------------------------------------------------------------

/// Keys real objects use, so generated `data` objects hit typed fields with odd values.
const FIELD_NAMES: &[&str] = &[
    "ack",
    "links",
    "timestamp",
    "members",
    "id",
    "msg_id",
    "media",
    "ticket",
    "chat",
    "priority",
    "orphan",
    "duration",
    "forwarding_score",
    "delivery_info",
    "read",
    "delivered",
    "size",
    "dimensions",
    "wa_state",
    "chat_type",
    "message_type",
    "type",
    "recipientids",
    "body",
    "fromMe",
    "_serialized",
    "serialized",
    "status",
    "attached_messages",
    "latest_message",
    "reactions",
    "poll_results",
    "closed_at",
    "label_ids",
];

/// Scalars Periskope is known to send in place of the documented type.
fn quirky_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "2",
            "-1",
            "7",
            "",
            "abc",
            "[]",
            "[1]",
            "2024-05-13 11:22:14+00",
            "1e400"
        ])
        .prop_map(Value::from),
        (-3i64..10).prop_map(Value::from),
        Just(Value::Null),
        Just(serde_json::json!(2.0)),
    ]
    .boxed()
}

/// Objects whose keys are real field names, nested a little.
fn field_object() -> BoxedStrategy<Value> {
    let value = prop_oneof![3 => quirky_scalar(), 2 => json_value()];
    let level = prop::collection::vec((prop::sample::select(FIELD_NAMES.to_vec()), value), 0..6)
        .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    level
        .prop_recursive(3, 24, 4, |inner| {
            prop::collection::vec((prop::sample::select(FIELD_NAMES.to_vec()), inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
        })
        .boxed()
}

fn event_name_value() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(EventKind::ALL.to_vec()).prop_map(|kind| Value::from(kind.as_str())),
        2 => unknown_name().prop_map(Value::from),
        1 => json_value(),
    ]
    .boxed()
}

/// A JSON object text with envelope keys (some missing, some repeated) in any order.
fn envelope_text() -> BoxedStrategy<String> {
    let data = prop_oneof![3 => field_object(), 1 => json_value()];
    let entries = (
        proptest::option::of(event_name_value()),
        proptest::option::of(event_name_value()),
        proptest::option::of(data),
        proptest::option::of(prop_oneof![text().prop_map(Value::from), json_value()]),
        proptest::option::of(prop_oneof![
            timestamp().prop_map(|t| serde_json::to_value(t).unwrap()),
            json_value()
        ]),
        proptest::option::of(json_value()),
        prop::collection::vec((text(), json_value()), 0..2),
        prop::collection::vec((prop::sample::select(vec!["event", "data", "org_id"]), json_value()), 0..2),
    )
        .prop_map(|(event, event_type, data, org_id, timestamp, previous, extra, repeated)| {
            let mut entries: Vec<(String, Value)> = Vec::new();
            let named = [
                ("event", event),
                ("event_type", event_type),
                ("data", data),
                ("org_id", org_id),
                ("timestamp", timestamp),
                ("previous_attributes", previous),
            ];
            for (key, value) in named {
                if let Some(value) = value {
                    entries.push((key.to_owned(), value));
                }
            }
            entries.extend(extra);
            // Rarely, a repeated envelope key.
            if entries.len().is_multiple_of(5) {
                entries.extend(repeated.into_iter().take(1).map(|(k, v)| (k.to_owned(), v)));
            }
            entries
        })
        .prop_shuffle()
        .prop_map(|entries| {
            let body: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{}:{}", serde_json::to_string(key).unwrap(), value))
                .collect();
            format!("{{{}}}", body.join(","))
        });
    entries.boxed()
}

fn fixture_bodies() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deliveries");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/deliveries")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".envelope.json"))
        .collect();
    names.sort();
    names.into_iter().map(|path| std::fs::read(path).unwrap()).collect()
}

/// A fixture with a few bytes changed, cut, or spliced: mostly-valid JSON that goes deep.
fn mutated_fixture() -> BoxedStrategy<Vec<u8>> {
    let bodies = fixture_bodies();
    assert!(!bodies.is_empty());
    let count = bodies.len();
    (0..count, prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4))
        .prop_map(move |(which, edits)| {
            let mut body = bodies[which].clone();
            for (at, op, byte) in edits {
                if body.is_empty() {
                    break;
                }
                let i = at.index(body.len());
                match op {
                    0 => body[i] = byte,
                    1 => body.truncate(i),
                    2 => {
                        body.remove(i);
                    }
                    _ => body.insert(i, b"\"{}[]:,0-9.e\\nul"[usize::from(byte) % 16]),
                }
            }
            body
        })
        .boxed()
}

/// Uses every accessor, so that a panic anywhere on the read side shows up.
fn exercise(event: &Event<'_>) {
    let _ = (event.kind(), event.name(), event.is_typed(), event.data_error(), event.raw_data());
    let _ = (event.message(), event.reaction(), event.chat(), event.note(), event.ticket(), event.phone());
    let _ = event.chat_notification();
    if let Some(timestamp) = &event.timestamp {
        let _ = timestamp.as_text();
        let _ = timestamp.parse().map(|time| (time.unix_millis(), time.offset_seconds()));
    }
    if let Some(error) = event.data_error() {
        assert!(error.path().starts_with("data"), "{}", error.path());
        let _ = error.to_string();
    }
    if let Some(message) = event.message() {
        let _ = message.timestamp.as_ref().map(Timestamp::unix_millis);
        let _ = message.links.as_ref().map(Links::items);
    }
    // A decoded event always serialises.
    serde_json::to_string(event).expect("a decoded event serialises");
}

fn decode_everything(bytes: &[u8]) {
    let result = Event::from_slice(bytes);
    if let Ok(event) = &result {
        exercise(event);
    } else if let Err(error) = &result {
        let _ = (error.code(), error.to_string());
    }
    let body = Bytes::copy_from_slice(bytes);
    let owned = WebhookEvent::decode(body.clone());
    match (&result, &owned) {
        (Ok(event), Ok(owned)) => {
            assert_eq!(owned.event(), event);
            assert_eq!(owned.body().as_ptr(), body.as_ptr());
            let _ = owned.raw_data();
        }
        (Err(error), Err(owned_error)) => assert_eq!(error, owned_error),
        _ => panic!("Event::from_slice and WebhookEvent::decode disagree: {result:?} vs {owned:?}"),
    }
}

/// decode → serialise → decode gives the same event.
fn assert_redecodes(text: &str) {
    let Ok(first) = Event::from_json(text) else { return };
    let written = serde_json::to_string(&first).unwrap();
    let second = Event::from_json(&written).unwrap_or_else(|error| panic!("{written}: {error}"));
    assert_eq!(second, first, "{text}\n -> {written}");
}

proptest! {
    #![proptest_config(config())]

    // (a) Arbitrary bytes.

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,128}") {
        decode_everything(text.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(bytes in mutated_fixture()) {
        decode_everything(&bytes);
    }

    // (b) Arbitrary JSON.

    #[test]
    fn arbitrary_json_values_never_panic(value in json_value()) {
        decode_everything(value.to_string().as_bytes());
    }

    #[test]
    fn envelopes_with_random_names_and_data_never_panic(text in envelope_text()) {
        decode_everything(text.as_bytes());
    }

    #[test]
    fn envelopes_with_random_names_and_data_redecode_identically(text in envelope_text()) {
        assert_redecodes(&text);
    }

    #[test]
    fn known_name_with_random_data_is_typed_or_undecodable(
        kind in prop::sample::select(EventKind::ALL.to_vec()),
        data in prop_oneof![field_object(), json_value()],
        data_first in any::<bool>(),
    ) {
        let text = if data_first {
            format!(r#"{{"data":{data},"org_id":"o","event":"{kind}"}}"#)
        } else {
            format!(r#"{{"event":"{kind}","data":{data},"org_id":"o"}}"#)
        };
        let event = Event::from_json(&text).unwrap();
        prop_assert_eq!(event.kind(), kind);
        prop_assert_eq!(event.org_id.as_deref(), Some("o"));
        match &event.data {
            EventData::Undecodable { data: raw, .. } => prop_assert_eq!(raw.get(), data.to_string()),
            EventData::Unknown { .. } => prop_assert!(false, "a known name gave Unknown"),
            _ => prop_assert!(event.is_typed()),
        }
        assert_redecodes(&text);
    }

    #[test]
    fn unknown_name_keeps_random_data_verbatim(name in unknown_name(), data in json_value()) {
        let text = format!(r#"{{"event":{},"data":{data}}}"#, serde_json::to_string(&name).unwrap());
        let event = Event::from_json(&text).unwrap();
        prop_assert_eq!(event.kind(), EventKind::Unknown);
        prop_assert_eq!(event.name(), name.as_str());
        prop_assert_eq!(event.raw_data().unwrap().get(), data.to_string());
    }

    // (c) Serialise, then decode.

    #[test]
    fn events_round_trip_through_json(event in event()) {
        let json = serde_json::to_string(&event).unwrap();
        let decoded = Event::from_json(&json).unwrap_or_else(|error| panic!("{json}: {error}"));
        prop_assert!(decoded.is_typed() || event.kind() == EventKind::Unknown, "{:?}", decoded.data_error());
        prop_assert_eq!(&decoded, &event, "{}", json);
        prop_assert_eq!(decoded.kind(), event.kind());
        prop_assert_eq!(decoded.name(), event.name());
        // And once more, through bytes.
        let again = Event::from_slice(json.as_bytes()).unwrap();
        prop_assert_eq!(&again, &event);
    }

    #[test]
    fn events_round_trip_through_webhook_event(event in event()) {
        let owned = WebhookEvent::from_event(&event);
        prop_assert_eq!(owned.event(), &event);
        prop_assert_eq!(owned.kind(), event.kind());
        // The body it built is the compact serialisation, and its `data` is the data's.
        let compact = serde_json::to_vec(&event).unwrap();
        prop_assert_eq!(owned.body().as_ref(), compact.as_slice());
        let raw = owned.raw_data().expect("data is always written");
        prop_assert_eq!(raw.get(), serde_json::to_string(&event.data).unwrap());
        let clone = owned.clone();
        prop_assert_eq!(clone, owned);
    }

    #[test]
    fn objects_round_trip_on_their_own(
        message in message(),
        chat in chat(),
        reaction in reaction(),
        note in note(),
        phone in phone(),
        notification in chat_notification(),
    ) {
        let json = serde_json::to_string(&message).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Message<'_>>(&json).unwrap(), &message);
        let json = serde_json::to_string(&chat).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Chat<'_>>(&json).unwrap(), &chat);
        let json = serde_json::to_string(&reaction).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Reaction<'_>>(&json).unwrap(), &reaction);
        let json = serde_json::to_string(&note).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Note<'_>>(&json).unwrap(), &note);
        let json = serde_json::to_string(&phone).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Phone<'_>>(&json).unwrap(), &phone);
        let json = serde_json::to_string(&notification).unwrap();
        prop_assert_eq!(&serde_json::from_str::<ChatNotification<'_>>(&json).unwrap(), &notification);
    }
}
