//! Every fixture in `tests/fixtures` decodes, with the values the file actually holds.
//!
//! Envelope files (`*.envelope.json`, `field-observed.*.json`) go through both
//! [`Event::from_slice`] and [`WebhookEvent::decode`]; bare object files go through
//! `serde_json::from_slice::<T>`. A directory walk makes sure no fixture is silently skipped.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use periskope_webhook::event::{
    Ack, Chat, ChatNotification, ChatType, Event, EventData, EventKind, Links, Message, MessageType, Note,
    NotificationType, Phone, Reaction, TicketInfo, TicketStatus, Timestamp, WaState, WebhookEvent,
};

const ORG_ID: &str = "2997dd64-89bf-48d3-9a22-b314fca017e5";
const MASKED_ORG_ID: &str = "2997xx64-89bf-48d3-9a22-b314fxx017e5";
const ENVELOPE_TIMESTAMP: &str = "2025-01-20T07:51:48.209+00:00";
const ENVELOPE_MILLIS: i64 = 1_737_359_508_209;

/// Files that are not deliveries; they are checked separately (or not at all).
const NOT_DELIVERIES: [&str; 2] = ["signature-test-vector.json", "webhook-subscription.create-response.json"];

/// Every bare object file, with the type it holds.
const BARE_OBJECTS: [(&str, &str); 18] = [
    ("chat.created.json", "Chat"),
    ("chat.custom_properties.updated.json", "Chat"),
    ("chat.object.json", "Chat"),
    ("chat.notification.created.json", "ChatNotification"),
    ("message.ack.updated.json", "Message"),
    ("message.created.json", "Message"),
    ("message.deleted.json", "Message"),
    ("message.flagged.json", "Message"),
    ("note.created.json", "Note"),
    ("org.phone.connected.json", "Phone"),
    ("org.phone.disconnected.json", "Phone"),
    ("org.phone.updated.json", "Phone"),
    ("phone.object.json", "Phone"),
    ("reaction.created.json", "Reaction"),
    ("reaction.updated.json", "Reaction"),
    ("ticket.created.json", "TicketInfo"),
    ("ticket.deleted.json", "TicketInfo"),
    ("ticket.updated.json", "TicketInfo"),
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Deliveries live in `deliveries/`, the objects and vectors beside it.
fn read(name: &str) -> Vec<u8> {
    let path = if is_envelope_file(name) {
        fixtures_dir().join("deliveries").join(name)
    } else {
        fixtures_dir().join(name)
    };
    std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn json_files() -> Vec<String> {
    let mut names: Vec<String> = [fixtures_dir(), fixtures_dir().join("deliveries")]
        .into_iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("tests/fixtures exists"))
        .map(|entry| entry.expect("dir entry").file_name().into_string().expect("UTF-8 file name"))
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn is_envelope_file(name: &str) -> bool {
    name.ends_with(".envelope.json") || name.starts_with("field-observed.")
}

/// The event kind a delivery file's name announces.
fn kind_from_file_name(name: &str) -> EventKind {
    if let Some(event) = name.strip_suffix(".envelope.json") {
        return EventKind::from_name(event);
    }
    // `field-observed.<event name>.<variant>.json`: the longest known name followed by a dot.
    let rest = name.strip_prefix("field-observed.").and_then(|rest| rest.strip_suffix(".json")).unwrap_or("");
    EventKind::ALL
        .into_iter()
        .filter(|kind| rest.strip_prefix(kind.as_str()).is_some_and(|tail| tail.starts_with('.')))
        .max_by_key(|kind| kind.as_str().len())
        .unwrap_or(EventKind::Unknown)
}

/// Decodes a delivery both ways, checks they agree, and returns the owned form.
fn decode_delivery(name: &str) -> WebhookEvent {
    let bytes = read(name);
    let event = Event::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
    let body = Bytes::from(bytes.clone());
    let owned = WebhookEvent::decode(body.clone()).unwrap_or_else(|error| panic!("{name}: {error}"));
    assert_eq!(owned.event(), &event, "{name}: Event::from_slice and WebhookEvent::decode differ");
    assert_eq!(owned.body().as_ptr(), body.as_ptr(), "{name}: WebhookEvent copied the body");
    assert!(event.is_typed(), "{name}: {:?}", event.data_error());
    owned
}

fn millis(timestamp: &Option<Timestamp<'_>>) -> Option<i64> {
    timestamp.as_ref().and_then(Timestamp::unix_millis)
}

fn text<'t>(timestamp: &'t Option<Timestamp<'_>>) -> Option<&'t str> {
    timestamp.as_ref().and_then(Timestamp::as_text)
}

/// Compares `previous_attributes` by value and checks it is a verbatim slice of the file.
fn assert_previous(name: &str, event: &WebhookEvent, expected: Option<serde_json::Value>) {
    let previous = event.event().previous_attributes.as_ref();
    match expected {
        None => assert!(previous.is_none(), "{name}: unexpected previous_attributes {previous:?}"),
        Some(expected) => {
            let previous = previous.unwrap_or_else(|| panic!("{name}: previous_attributes missing"));
            let value: serde_json::Value = previous.parse().expect("previous_attributes is JSON");
            assert_eq!(value, expected, "{name}");
            let body = std::str::from_utf8(event.body()).unwrap();
            assert!(body.contains(previous.get()), "{name}: previous_attributes not kept verbatim");
        }
    }
}

fn assert_envelope(name: &str, event: &WebhookEvent, kind: EventKind) {
    assert_eq!(event.kind(), kind, "{name}");
    assert_eq!(event.name(), kind.as_str(), "{name}");
    assert_eq!(event.event().org_id.as_deref(), Some(ORG_ID), "{name}");
    assert_eq!(text(&event.event().timestamp), Some(ENVELOPE_TIMESTAMP), "{name}");
    assert_eq!(millis(&event.event().timestamp), Some(ENVELOPE_MILLIS), "{name}");
    // The typed event's raw data is the `data` value of the file, exactly.
    let raw = event.raw_data().expect("data present");
    let raw = raw.get();
    let body = std::str::from_utf8(event.body()).unwrap();
    assert!(body.contains(raw), "{name}: raw_data is not a slice of the body");
    let from_file: serde_json::Value = serde_json::from_slice(event.body()).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(raw).unwrap(), from_file["data"], "{name}");
}

// ---------------------------------------------------------------------------------------------
// Object checks shared by bare files and envelopes.
// ---------------------------------------------------------------------------------------------

const MESSAGE_ID: &str = "true_12036329726967XXXX@g.us_3EB01F4653XX9XX05E9859_9190043XXXXX@c.us";

fn assert_doc_message(message: &Message<'_>) {
    assert_eq!(message.message_id.as_deref(), Some(MESSAGE_ID));
    assert_eq!(message.org_id.as_deref(), Some(MASKED_ORG_ID));
    assert_eq!(message.ack, Some(Ack::Delivered));
    assert_eq!(message.ack.map(Ack::code), Some(2));
    assert_eq!(message.author.as_deref(), Some("9190043XXXXX@c.us"));
    assert_eq!(message.body.as_deref(), Some("Hello, world"));
    assert_eq!(message.broadcast, None);
    assert_eq!(message.device_type.as_deref(), Some("android"));
    assert_eq!(message.flag_status, Some(false));
    assert_eq!(message.duration, None);
    assert_eq!(message.forwarding_score, Some(0));
    assert_eq!(message.from.as_deref(), Some("9190043XXXXX@c.us"));
    assert_eq!(message.to.as_deref(), Some("12036329726967XXXX@g.us"));
    assert_eq!(message.from_me, Some(true));
    assert_eq!(message.has_media, Some(true));
    assert_eq!(message.has_quoted_msg, Some(false));
    assert_eq!(message.has_reaction, Some(false));
    let id = message.id.as_ref().expect("id");
    assert_eq!(id.id.as_deref(), Some("3EB01F4653XX9XX05E9859"));
    assert_eq!(id.from_me, Some(true));
    assert_eq!(id.remote.as_deref(), Some("12036329726967XXXX@g.us"));
    assert_eq!(id.serialized.as_deref(), Some(MESSAGE_ID));
    assert_eq!(message.invite_v4, None);
    assert_eq!(message.is_ephemeral, None);
    assert_eq!(message.is_forwarded, Some(false));
    assert_eq!(message.is_gif, Some(false));
    assert_eq!(message.is_starred, Some(false));
    assert_eq!(message.is_status, Some(false));
    // `"links": "[]"`: a string holding an empty array.
    assert_eq!(message.links, Some(Links::List(Vec::new())));
    assert!(message.links.as_ref().unwrap().is_empty());
    assert_eq!(message.location, None);
    assert_eq!(message.media_key, None);
    assert_eq!(message.mentioned_ids.as_deref(), Some(&[][..]));
    assert_eq!(message.order_id, None);
    assert_eq!(message.raw_data, None);
    assert_eq!(message.token, None);
    assert_eq!(message.message_type, Some(MessageType::Image));
    assert_eq!(message.vcards.as_deref(), Some(&[][..]));
    assert_eq!(message.chat_id.as_deref(), Some("12036329726967XXXX@g.us"));
    assert_eq!(text(&message.timestamp), Some("2024-05-13 11:19:34+00"));
    assert_eq!(millis(&message.timestamp), Some(1_715_599_174_000));
    assert_eq!(message.org_phone.as_deref(), Some("9190043XXXXX@c.us"));
    assert_eq!(message.broadcast_id, None);
    assert_eq!(message.is_deleted, None);
    assert_eq!(message.performed_by.as_deref(), Some("9190043XXXXX@c.us"));
    assert_eq!(message.prev_body, None);
    assert_eq!(message.quoted_message_id, None);
    assert_eq!(message.sender_phone.as_deref(), Some("9190043XXXXX@c.us"));
    assert_eq!(message.sent_message_id.as_deref(), Some("f7b10126-5d5e-432f-941c-94ced28debac"));
    assert_eq!(message.updated_at, None);
    assert_eq!(message.unique_id, None);

    let media = message.media.as_ref().expect("media");
    assert!(media.path.as_deref().unwrap().starts_with("/storage/v1/object/public/message-media/2997xx64-"));
    assert!(media.path.as_deref().unwrap().ends_with("/dbd33c9e-bedc-4df7-8a4c-f9eadf957ac9"));
    assert_eq!(media.size, Some(19_940));
    assert_eq!(media.filename.as_deref(), Some("dbd33c9e-bedc-4df7-8a4c-f9eadf957ac9"));
    assert_eq!(media.mimetype.as_deref(), Some("image/jpeg"));
    assert_eq!(media.filedata, None);
    let dimensions = media.dimensions.expect("dimensions");
    assert_eq!((dimensions.width, dimensions.height, dimensions.ar), (Some(512), Some(512), Some(1.0)));

    let delivery = message.delivery_info.as_ref().expect("delivery_info");
    let read = delivery.read.as_ref().expect("read");
    assert_eq!(read.iter().collect::<Vec<_>>(), [("91XXXXXXXX01@c.us", &1_731_984_657_443)]);
    // The epoch-ms values read as timestamps too.
    assert_eq!(
        Timestamp::Number(*read.get("91XXXXXXXX01@c.us").unwrap()).unix_millis(),
        Some(1_731_984_657_443)
    );
    let pending: Vec<&str> = delivery.pending.as_ref().expect("pending").iter().map(|s| s.as_str()).collect();
    assert_eq!(pending, ["91XXXXXXXX02@c.us", "91XXXXXXXX03@c.us"]);
    let delivered = delivery.delivered.as_ref().expect("delivered");
    assert_eq!(
        delivered.iter().collect::<Vec<_>>(),
        [("91XXXXXXXX01@c.us", &1_731_214_159_000), ("91XXXXXXXX04@c.us", &1_731_195_010_000)]
    );
    assert_eq!(delivery.delivered_count, None);
    assert_eq!(delivery.read_count, None);
}

fn assert_doc_chat(chat: &Chat<'_>) {
    assert_eq!(chat.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(chat.chat_id.as_deref(), Some("919537851844@c.us"));
    assert_eq!(chat.chat_name.as_deref(), Some("BK Local1"));
    assert_eq!(chat.chat_type, Some(ChatType::User));
    assert_eq!(chat.org_phone.as_deref(), Some("918527184400@c.us"));
    assert_eq!(chat.is_muted, Some(false));
    assert_eq!(chat.is_exited, Some(false));
    assert_eq!(chat.is_archived, None);
    assert_eq!(chat.closed_at, None);
    assert_eq!(chat.invite_link, None);
    assert_eq!(chat.custom_properties, None);
    assert_eq!(chat.assigned_to.as_deref(), Some("bharat@hashlabs.dev"));
    assert!(
        chat.chat_image.as_deref().unwrap().starts_with("https://storage.googleapis.com/periskope-images/")
    );
    assert!(chat.chat_image.as_deref().unwrap().ends_with("?timestamp=1737689973340"));
    assert_eq!(text(&chat.created_at), Some("2025-01-18T14:51:03+00:00"));
    assert_eq!(millis(&chat.created_at), Some(1_737_211_863_000));
    // Microsecond precision: millis truncate, nanoseconds keep every digit.
    assert_eq!(text(&chat.updated_at), Some("2025-01-27T11:08:10.696758+00:00"));
    assert_eq!(millis(&chat.updated_at), Some(1_737_976_090_696));
    assert_eq!(chat.updated_at.as_ref().unwrap().parse().unwrap().subsec_nanos(), 696_758_000);

    let labels = chat.label_ids.as_ref().expect("label_ids");
    assert_eq!(
        labels.iter().collect::<Vec<_>>(),
        [("label-xbitdvipqshahdcu", &true), ("label-xgargwpbzidjpapt", &true)]
    );
    let access = chat.chat_access.as_ref().expect("chat_access");
    assert_eq!(access.iter().collect::<Vec<_>>(), [("bharat@hashlabs.dev", &true)]);
    let common = chat.common_chats.as_ref().expect("common_chats");
    assert_eq!(common.len(), 13);
    assert_eq!(common[0], "120363329861739657@g.us");
    assert_eq!(common[12], "120363392071406466@g.us");

    assert_doc_members(chat);
}

/// The two members shared by the chat and ticket fixtures.
fn assert_doc_members(chat: &Chat<'_>) {
    let members = chat.members.as_ref().expect("members");
    assert_eq!(members.keys().collect::<Vec<_>>(), ["918527184400@c.us", "919537851844@c.us"]);
    let support = members.get("918527184400@c.us").unwrap();
    assert_eq!(support.contact_name.as_deref(), Some("Support"));
    assert_eq!(support.contact_id.as_deref(), Some("918527184400@c.us"));
    assert_eq!(support.chat_id.as_deref(), Some("919537851844@c.us"));
    assert_eq!(support.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(support.org_phone.as_deref(), Some("918527184400@c.us"));
    assert_eq!(support.is_internal, Some(true));
    assert_eq!(support.is_admin, Some(true));
    assert_eq!(support.is_super_admin, Some(true));
    assert_eq!(support.contact_color.as_deref(), Some("#B4876E"));
    assert!(
        support
            .contact_image
            .as_deref()
            .unwrap()
            .ends_with("%2F918527184400%40c.us.jpg?timestamp=1737690126280")
    );
    assert_eq!(support.contact_labels, None);
    let customer = members.get("919537851844@c.us").unwrap();
    assert_eq!(customer.contact_name.as_deref(), Some("BK Local1"));
    assert_eq!(customer.is_internal, Some(false));
    assert_eq!(customer.is_admin, Some(true));
}

fn assert_doc_notification(notification: &ChatNotification<'_>) {
    let serialized = "true_120363371308389685@g.us_fa3c48a78cc64e139e5737f7057235ea_918527184400@c.us_remove";
    assert_eq!(notification.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(notification.notification_id.as_deref(), Some(serialized));
    assert_eq!(notification.chat_id.as_deref(), Some("120363371308389685@g.us"));
    assert_eq!(notification.author.as_deref(), Some("918527184400@c.us"));
    assert_eq!(notification.body, None);
    let id = notification.id.as_ref().expect("id");
    assert_eq!(id.id.as_deref(), Some("fa3c48a78cc64e139e5737f7057235ea"));
    assert_eq!(id.from_me, Some(true));
    assert_eq!(id.remote.as_deref(), Some("120363371308389685@g.us"));
    // Written `serialized`, without the underscore.
    assert_eq!(id.serialized.as_deref(), Some(serialized));
    let recipients: Vec<&str> =
        notification.recipient_ids.as_ref().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(recipients, ["919537851844@c.us"]);
    assert_eq!(notification.notification_type, Some(NotificationType::Remove));
    assert_eq!(text(&notification.timestamp), Some("2025-01-11T11:52:27.231+00:00"));
    assert_eq!(millis(&notification.timestamp), Some(1_736_596_347_231));
    assert_eq!(notification.org_phone.as_deref(), Some("918527184400@c.us"));
    assert_eq!(notification.unique_id.as_deref(), Some("fa3c48a78cc64e139e5737f7057235ea"));
    assert_eq!(notification.metadata, None);
}

fn assert_doc_note(note: &Note<'_>) {
    assert_eq!(note.message_id.as_deref(), Some("true_2634e275-ac58-4c85-892d-83882810fc1c_api"));
    assert_eq!(note.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(note.ack, Some(Ack::DeliveredToAll));
    assert_eq!(note.body.as_deref(), Some("Hello World"));
    assert_eq!(note.from_me, Some(true));
    assert_eq!(note.message_type, Some(MessageType::Chat));
    assert_eq!(note.chat_id.as_deref(), Some("91882424xxxx@c.us"));
    assert_eq!(text(&note.timestamp), Some("2025-08-18T13:38:37.203+00:00"));
    assert_eq!(millis(&note.timestamp), Some(1_755_524_317_203));
    assert_eq!(millis(&note.updated_at), Some(1_755_524_317_203));
    assert_eq!(note.org_phone.as_deref(), Some("91882424xxxx@c.us"));
    assert_eq!(note.performed_by.as_deref(), Some("api"));
    assert_eq!(note.prev_body, None);
    assert_eq!(note.quoted_message_id.as_deref(), Some("52643136-1573-4011-ad22-b95ca6ea8e0c"));
    assert_eq!(note.sender_phone.as_deref(), Some("91882424xxxx@c.us"));
    assert_eq!(note.sent_message_id.as_deref(), Some("2634e275-ac58-4c85-892d-83882810fc1c"));
    assert_eq!(note.unique_id, note.sent_message_id);
    assert_eq!(note.is_private_note, Some(true));
    assert_eq!(note.is_deleted, None);
    assert_eq!(note.mentioned_ids.as_deref(), Some(&[][..]));
    let media = note.media.as_ref().expect("media");
    assert_eq!(media.mimetype.as_deref(), Some("audio/wav"));
    assert_eq!(media.filename.as_deref(), Some("beep.wav"));
    assert_eq!(
        media.filedata.as_deref(),
        Some("data:audio/wav;base64,UklGRkKAAABXQVZFZm10IBAAAAABAAEAQB8A...")
    );
    assert_eq!((media.path.as_deref(), media.size, media.dimensions), (None, None, None));
}

/// The phone object all `org.phone.*` fixtures share; `qr` is the QR fixture's variant.
fn assert_doc_phone(phone: &Phone<'_>, qr: bool) {
    assert_eq!(phone.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(phone.org_phone.as_deref(), Some("918527184400@c.us"));
    assert_eq!(phone.phone_id.as_deref(), Some("phone-bqzvyibhmwkaergr"));
    assert_eq!(phone.phone_name.as_deref(), Some("Support"));
    assert!(phone.phone_image.as_deref().unwrap().ends_with("?timestamp=1737141384215"));
    assert_eq!(text(&phone.created_at), Some("2024-12-15T11:47:26.668505+00:00"));
    assert_eq!(millis(&phone.created_at), Some(1_734_263_246_668));
    assert_eq!(millis(&phone.updated_at), Some(ENVELOPE_MILLIS));
    assert_eq!(millis(&phone.first_connected_at), Some(1_734_263_269_649));
    let labels = phone.label_ids.as_ref().expect("label_ids");
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["label-bflirzqiodgianfh", "label-rbdshklasmlbfczf"]);
    assert!(labels.values().all(|value| *value));
    let names: Vec<&str> = phone.labels.as_ref().unwrap().iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["test1", "test2"]);
    if qr {
        assert_eq!(phone.wa_state, Some(WaState::Disconnected));
        assert_eq!(phone.qr_code.as_deref(), Some("2@EXAMPLE-QR-STRING-NOT-FROM-DOCS"));
        assert_eq!(phone.is_ready, Some(false));
    } else {
        // Every docs example, the disconnected one included, says CONNECTED.
        assert_eq!(phone.wa_state, Some(WaState::Connected));
        assert_eq!(phone.qr_code, None);
        assert_eq!(phone.is_ready, Some(true));
    }
}

fn assert_doc_reaction(reaction: &Reaction<'_>) {
    let target = "false_120363297269676566@g.us_3EB01F4653BB9DD05E9859_919004389372@c.us";
    let own = "true_120363297269676566@g.us_3EB01D1702AD13661CDAEA_919289665999@c.us";
    assert_eq!(reaction.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(reaction.message_id.as_deref(), Some(target));
    assert_eq!(reaction.ack, Some(Ack::Pending));
    let id = reaction.id.as_ref().expect("id");
    assert_eq!(id.id.as_deref(), Some("3EB01D1702AD13661CDAEA"));
    assert_eq!(id.from_me, Some(true));
    assert_eq!(id.remote.as_deref(), Some("120363297269676566@g.us"));
    assert_eq!(id.serialized.as_deref(), Some(own));
    assert_eq!(reaction.orphan, Some(0));
    assert_eq!(reaction.orphan_reason, None);
    assert_eq!(reaction.reaction.as_deref(), Some("😀"));
    assert_eq!(reaction.read, Some(true));
    assert_eq!(reaction.reaction_id.as_deref(), Some(own));
    assert_eq!(text(&reaction.timestamp), Some("2024-05-13 11:22:14+00"));
    assert_eq!(millis(&reaction.timestamp), Some(1_715_599_334_000));
    let msg_id = reaction.msg_id.as_ref().expect("msg_id");
    assert_eq!(msg_id.id.as_deref(), Some("3EB01F4653BB9DD05E9859"));
    assert_eq!(msg_id.from_me, Some(false));
    assert_eq!(msg_id.serialized.as_deref(), Some(target));
    assert_eq!(reaction.sender_id.as_deref(), Some("919289665999@c.us"));
    assert_eq!(reaction.org_phone.as_deref(), Some("919289665999@c.us"));
    assert_eq!(reaction.chat_id.as_deref(), Some("120363297269676566@g.us"));
    assert_eq!(reaction.unique_id.as_deref(), Some("3EB01F4653BB9DD05E9859"));
}

/// The ticket fixtures; `compact` is `ticket.deleted`'s chat without members.
fn assert_doc_ticket_info(info: &TicketInfo<'_>, compact: bool) {
    let chat = info.chat.as_ref().expect("chat");
    assert_eq!(chat.org_id.as_deref(), Some(MASKED_ORG_ID));
    assert_eq!(chat.org_phone.as_deref(), Some("91900438XXXX@c.us"));
    assert_eq!(chat.chat_id.as_deref(), Some("919X836X025X090@Xc.us"));
    assert_eq!(chat.chat_name.as_deref(), Some("Demo Chat"));
    // Ticket payloads use `chat` as the chat type.
    assert_eq!(chat.chat_type, Some(ChatType::Chat));
    assert_eq!(chat.chat_image.as_deref(), Some("/storage/image.jpeg"));
    assert_eq!(chat.chat_labels.as_deref(), Some("label1, label2"));
    let properties = chat.custom_properties.as_ref().expect("custom_properties");
    assert_eq!(properties.keys().collect::<Vec<_>>(), ["Property1", "Property2", "Property3"]);
    assert_eq!(properties.get("Property2").map(|v| v.as_str()), Some("opXtion1"));
    if compact {
        assert_eq!(chat.members, None);
        assert_eq!(chat.is_muted, None);
        assert_eq!(chat.created_at, None);
        assert_eq!(chat.invite_link, None);
    } else {
        assert_doc_members(chat);
        assert_eq!(chat.is_muted, Some(false));
        assert_eq!(millis(&chat.created_at), Some(1_737_858_650_000));
        assert_eq!(
            chat.invite_link.as_deref(),
            Some("https://chat.whatsapp.com/invite/BZcwk7oCxxVIhExxxcmKxN")
        );
        assert_eq!(chat.group_description, None);
    }

    let message = info.message.as_ref().expect("message");
    assert_eq!(message.body.as_deref(), Some("hello"));
    assert_eq!(message.chat_id.as_deref(), Some("X919836025090@c.us"));
    assert_eq!(message.org_phone.as_deref(), Some("X91900438XXXX@c.us"));
    assert_eq!(text(&message.timestamp), Some("2024-05-13T17:27:15+00:00"));
    assert_eq!(millis(&message.timestamp), Some(1_715_621_235_000));
    assert_eq!(message.media_path.as_deref(), Some("/path/to/media"));
    assert_eq!(message.message_id.as_deref(), Some("true_91983602XXXX@c.us_3EB0DAB631F7E58XXXXE0C"));
    assert_eq!(message.sender_name.as_deref(), Some("Periskope Central"));
    assert_eq!(message.performed_by.as_deref(), Some("demo@email.com"));
    // Bare digits inside ticket payloads.
    assert_eq!(message.sender_phone.as_deref(), Some("91900438XXXX"));

    let ticket = info.ticket.as_ref().expect("ticket");
    assert_eq!(ticket.org_id.as_deref(), Some(MASKED_ORG_ID));
    assert_eq!(ticket.ticket_id.as_deref(), Some("TICKET-12345"));
    assert_eq!(ticket.subject.as_deref(), Some("Sample Ticket Subject"));
    assert_eq!(ticket.status, Some(TicketStatus::Open));
    assert_eq!(ticket.priority, Some(2));
    assert_eq!(ticket.assignee.as_deref(), Some("assignee@example.com"));
    assert_eq!(ticket.assigned_by.as_deref(), Some("manager@example.com"));
    assert_eq!(ticket.raised_by.as_deref(), Some("raisedby@example.com"));
    assert_eq!(millis(&ticket.due_date), Some(1_718_452_800_000));
    assert_eq!(millis(&ticket.created_at), Some(1_716_539_400_000));
    assert_eq!(ticket.ticket_labels.as_deref(), Some("label1, label2"));
    assert_eq!(ticket.quoted_message_id.as_deref(), Some("3EB0DAB631F7E580EAAE0C"));
    let custom = ticket.ticket_custom_properties.as_ref().expect("ticket_custom_properties");
    assert_eq!(
        custom.iter().map(|(k, v)| (k, v.as_str())).collect::<Vec<_>>(),
        [("property-1", "value-1"), ("property-2", "value-2"), ("property-3", "value-3")]
    );
    assert_eq!(ticket.closed_at, None);
    assert_eq!(ticket.is_deleted, None);

    let attached = info.attached_messages.as_ref().expect("attached_messages");
    let bodies: Vec<&str> = attached.iter().map(|m| m.body.as_deref().unwrap()).collect();
    assert_eq!(bodies, ["hello", "attached message 1"]);
    assert_eq!(attached[0], *message);
    assert_eq!(attached[1].sender_phone.as_deref(), Some("91900438XXXX"));
}

// ---------------------------------------------------------------------------------------------
// The directory: nothing is skipped.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_delivery_fixture_decodes_typed_with_the_kind_its_name_says() {
    let mut envelopes = 0;
    for name in json_files() {
        if NOT_DELIVERIES.contains(&name.as_str()) {
            continue;
        }
        if is_envelope_file(&name) {
            let expected = kind_from_file_name(&name);
            assert!(expected.is_known(), "{name}: file name names no known event");
            let event = decode_delivery(&name);
            assert!(event.event().is_typed(), "{name}");
            assert_eq!(event.kind(), expected, "{name}");
            assert_eq!(event.name(), expected.as_str(), "{name}");
            envelopes += 1;
        } else {
            let Some((_, ty)) = BARE_OBJECTS.iter().find(|(file, _)| *file == name) else {
                panic!("{name}: a new bare fixture; add it to BARE_OBJECTS with its type and value checks");
            };
            let bytes = read(&name);
            let result = match *ty {
                "Chat" => serde_json::from_slice::<Chat<'_>>(&bytes).map(drop),
                "ChatNotification" => serde_json::from_slice::<ChatNotification<'_>>(&bytes).map(drop),
                "Message" => serde_json::from_slice::<Message<'_>>(&bytes).map(drop),
                "Note" => serde_json::from_slice::<Note<'_>>(&bytes).map(drop),
                "Phone" => serde_json::from_slice::<Phone<'_>>(&bytes).map(drop),
                "Reaction" => serde_json::from_slice::<Reaction<'_>>(&bytes).map(drop),
                "TicketInfo" => serde_json::from_slice::<TicketInfo<'_>>(&bytes).map(drop),
                other => panic!("unknown type {other}"),
            };
            result.unwrap_or_else(|error| panic!("{name} as {ty}: {error}"));
        }
    }
    // 20 kinds, one envelope each, plus the field-observed variant.
    assert_eq!(envelopes, 21);
    // Every listed bare file still exists.
    let files = json_files();
    for (file, _) in BARE_OBJECTS {
        assert!(files.iter().any(|name| name == file), "{file} is listed but missing");
    }
}

#[test]
fn every_known_kind_has_an_envelope_fixture() {
    let files = json_files();
    for kind in EventKind::ALL {
        let name = format!("{}.envelope.json", kind.as_str());
        assert!(files.contains(&name), "no fixture {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes.
// ---------------------------------------------------------------------------------------------

#[test]
fn message_created_envelope() {
    let name = "message.created.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageCreated);
    assert_previous(name, &event, None);
    let EventData::MessageCreated(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
}

#[test]
fn message_updated_envelope() {
    let name = "message.updated.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageUpdated);
    assert_previous(
        name,
        &event,
        Some(serde_json::json!({"body": "Hello, wrld", "updated_at": "2024-05-13T11:19:34+00:00"})),
    );
    let EventData::MessageUpdated(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
}

#[test]
fn message_deleted_envelope() {
    let name = "message.deleted.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageDeleted);
    assert_previous(name, &event, Some(serde_json::json!({"is_deleted": null})));
    let EventData::MessageDeleted(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
}

#[test]
fn message_ack_updated_envelope() {
    let name = "message.ack.updated.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageAckUpdated);
    assert_previous(name, &event, Some(serde_json::json!({"ack": "1"})));
    let EventData::MessageAckUpdated(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
    assert!(message.ack.unwrap() > Ack::Server, "ack is ordered and never decreases");
}

#[test]
fn message_flagged_envelope() {
    let name = "message.flagged.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageFlagged);
    assert_previous(name, &event, Some(serde_json::json!({"flag_status": null})));
    let EventData::MessageFlagged(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
}

#[test]
fn message_unflagged_envelope() {
    let name = "message.unflagged.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageUnflagged);
    assert_previous(name, &event, Some(serde_json::json!({"flag_status": true})));
    let EventData::MessageUnflagged(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
}

#[test]
fn message_ticket_attached_envelope() {
    let name = "message.ticket.attached.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::MessageTicketAttached);
    assert_previous(name, &event, None);
    let EventData::MessageTicketAttached(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_doc_message(message);
    assert_eq!(event.event().message(), Some(message));
}

#[test]
fn field_observed_event_type_variant() {
    let name = "field-observed.message.created.event_type-variant.json";
    let event = decode_delivery(name);
    // `event_type` instead of `event`, no envelope fields besides `data`.
    assert_eq!(event.kind(), EventKind::MessageCreated);
    assert_eq!(event.name(), "message.created");
    assert_eq!(event.event().org_id, None);
    assert_eq!(event.event().timestamp, None);
    assert_eq!(event.event().previous_attributes, None);
    let EventData::MessageCreated(message) = &event.event().data else { panic!("{:?}", event.kind()) };
    let message: &Message<'_> = message;
    assert_eq!(message.chat_id.as_deref(), Some("120363408058769914@g.us"));
    assert_eq!(message.sender_phone.as_deref(), Some("916372161101@c.us"));
    assert_eq!(message.author, None);
    assert_eq!(message.from_me, Some(false));
    assert_eq!(message.message_type, Some(MessageType::Document));
    assert_eq!(message.body.as_deref(), Some("caption or null"));
    // `has_media` null even though `media` is present.
    assert_eq!(message.has_media, None);
    let media = message.media.as_ref().expect("media");
    assert_eq!(media.path.as_deref(), Some("https://storage.googleapis.com/periskope-attachments/..."));
    assert_eq!(media.filename.as_deref(), Some("NDA Copy.pdf"));
    assert_eq!(media.mimetype.as_deref(), Some("application/pdf"));
    assert_eq!(media.size, Some(368_416));
    assert_eq!(media.dimensions, None);
    assert_eq!(message.org_phone.as_deref(), Some("918904987623@c.us"));
    assert_eq!(text(&message.timestamp), Some("2026-06-18T12:07:27+00:00"));
    assert_eq!(millis(&message.timestamp), Some(1_781_784_447_000));
    assert_eq!((message.message_id.as_ref(), message.ack, message.links.as_ref()), (None, None, None));
}

#[test]
fn reaction_created_envelope() {
    let name = "reaction.created.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::ReactionCreated);
    assert_previous(name, &event, None);
    let EventData::ReactionCreated(reaction) = &event.event().data else { panic!("{:?}", event.kind()) };
    let reaction: &Reaction<'_> = reaction;
    assert_doc_reaction(reaction);
}

#[test]
fn reaction_updated_envelope() {
    let name = "reaction.updated.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::ReactionUpdated);
    assert_previous(name, &event, Some(serde_json::json!({"reaction": "👍"})));
    let EventData::ReactionUpdated(reaction) = &event.event().data else { panic!("{:?}", event.kind()) };
    let reaction: &Reaction<'_> = reaction;
    assert_doc_reaction(reaction);
}

#[test]
fn chat_created_envelope() {
    let name = "chat.created.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::ChatCreated);
    assert_previous(name, &event, None);
    let EventData::ChatCreated(chat) = &event.event().data else { panic!("{:?}", event.kind()) };
    let chat: &Chat<'_> = chat;
    assert_doc_chat(chat);
}

#[test]
fn chat_custom_properties_updated_envelope() {
    let name = "chat.custom_properties.updated.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::ChatCustomPropertiesUpdated);
    assert_previous(name, &event, Some(serde_json::json!({"custom_properties": {"Property1": "option0"}})));
    let EventData::ChatCustomPropertiesUpdated(chat) = &event.event().data else {
        panic!("{:?}", event.kind())
    };
    assert_doc_chat(chat);
}

#[test]
fn chat_notification_created_envelope() {
    let name = "chat.notification.created.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::ChatNotificationCreated);
    assert_previous(name, &event, None);
    let EventData::ChatNotificationCreated(notification) = &event.event().data else {
        panic!("{:?}", event.kind())
    };
    let notification: &ChatNotification<'_> = notification;
    assert_doc_notification(notification);
}

#[test]
fn note_created_envelope() {
    let name = "note.created.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::NoteCreated);
    assert_previous(name, &event, None);
    let EventData::NoteCreated(note) = &event.event().data else { panic!("{:?}", event.kind()) };
    let note: &Note<'_> = note;
    assert_doc_note(note);
}

#[test]
fn ticket_created_envelope() {
    let name = "ticket.created.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::TicketCreated);
    assert_previous(name, &event, None);
    let EventData::TicketCreated(info) = &event.event().data else { panic!("{:?}", event.kind()) };
    let info: &TicketInfo<'_> = info;
    assert_doc_ticket_info(info, false);
}

#[test]
fn ticket_updated_envelope() {
    let name = "ticket.updated.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::TicketUpdated);
    assert_previous(name, &event, Some(serde_json::json!({"status": "inprogress"})));
    let EventData::TicketUpdated(info) = &event.event().data else { panic!("{:?}", event.kind()) };
    let info: &TicketInfo<'_> = info;
    assert_doc_ticket_info(info, false);
    let previous: serde_json::Value = event.event().previous_attributes.as_ref().unwrap().parse().unwrap();
    let before = TicketStatus::from(previous["status"].as_str().unwrap());
    assert_eq!(before, TicketStatus::InProgress);
}

#[test]
fn ticket_deleted_envelope() {
    let name = "ticket.deleted.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::TicketDeleted);
    assert_previous(name, &event, None);
    let EventData::TicketDeleted(info) = &event.event().data else { panic!("{:?}", event.kind()) };
    let info: &TicketInfo<'_> = info;
    assert_doc_ticket_info(info, true);
}

#[test]
fn org_phone_connected_envelope() {
    let name = "org.phone.connected.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::OrgPhoneConnected);
    assert_previous(name, &event, Some(serde_json::json!({"wa_state": "DISCONNECTED"})));
    let EventData::OrgPhoneConnected(phone) = &event.event().data else { panic!("{:?}", event.kind()) };
    let phone: &Phone<'_> = phone;
    assert_doc_phone(phone, false);
}

#[test]
fn org_phone_disconnected_envelope() {
    let name = "org.phone.disconnected.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::OrgPhoneDisconnected);
    assert_previous(name, &event, Some(serde_json::json!({"wa_state": "CONNECTED"})));
    let EventData::OrgPhoneDisconnected(phone) = &event.event().data else { panic!("{:?}", event.kind()) };
    let phone: &Phone<'_> = phone;
    assert_doc_phone(phone, false);
}

#[test]
fn org_phone_updated_envelope() {
    let name = "org.phone.updated.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::OrgPhoneUpdated);
    assert_previous(name, &event, Some(serde_json::json!({"phone_name": "Old name"})));
    let EventData::OrgPhoneUpdated(phone) = &event.event().data else { panic!("{:?}", event.kind()) };
    let phone: &Phone<'_> = phone;
    assert_doc_phone(phone, false);
}

#[test]
fn org_phone_qr_envelope() {
    let name = "org.phone.qr.envelope.json";
    let event = decode_delivery(name);
    assert_envelope(name, &event, EventKind::OrgPhoneQr);
    assert_previous(name, &event, Some(serde_json::json!({"qr_code": null})));
    let EventData::OrgPhoneQr(phone) = &event.event().data else { panic!("{:?}", event.kind()) };
    let phone: &Phone<'_> = phone;
    assert_doc_phone(phone, true);
    assert_eq!(event.event().phone(), Some(phone));
}

// ---------------------------------------------------------------------------------------------
// Bare objects, and agreement with their envelopes.
// ---------------------------------------------------------------------------------------------

#[test]
fn bare_messages() {
    for (name, envelope) in [
        ("message.created.json", "message.created.envelope.json"),
        ("message.ack.updated.json", "message.ack.updated.envelope.json"),
        ("message.deleted.json", "message.deleted.envelope.json"),
        ("message.flagged.json", "message.flagged.envelope.json"),
    ] {
        let bytes = read(name);
        let message: Message<'_> =
            serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_doc_message(&message);
        assert_eq!(decode_delivery(envelope).event().message(), Some(&message), "{name} vs {envelope}");
    }
}

#[test]
fn bare_chats() {
    for (name, envelope) in [
        ("chat.created.json", "chat.created.envelope.json"),
        ("chat.custom_properties.updated.json", "chat.custom_properties.updated.envelope.json"),
        ("chat.object.json", "chat.created.envelope.json"),
    ] {
        let bytes = read(name);
        let chat: Chat<'_> = serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_doc_chat(&chat);
        assert_eq!(decode_delivery(envelope).event().chat(), Some(&chat), "{name} vs {envelope}");
    }
}

#[test]
fn bare_chat_notification() {
    let bytes = read("chat.notification.created.json");
    let notification: ChatNotification<'_> = serde_json::from_slice(&bytes).unwrap();
    assert_doc_notification(&notification);
    let envelope = decode_delivery("chat.notification.created.envelope.json");
    assert_eq!(envelope.event().chat_notification(), Some(&notification));
}

#[test]
fn bare_note() {
    let bytes = read("note.created.json");
    let note: Note<'_> = serde_json::from_slice(&bytes).unwrap();
    assert_doc_note(&note);
    assert_eq!(decode_delivery("note.created.envelope.json").event().note(), Some(&note));
}

#[test]
fn bare_phones() {
    for (name, envelope) in [
        ("org.phone.connected.json", "org.phone.connected.envelope.json"),
        ("org.phone.disconnected.json", "org.phone.disconnected.envelope.json"),
        ("org.phone.updated.json", "org.phone.updated.envelope.json"),
        ("phone.object.json", "org.phone.updated.envelope.json"),
    ] {
        let bytes = read(name);
        let phone: Phone<'_> =
            serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_doc_phone(&phone, false);
        assert_eq!(decode_delivery(envelope).event().phone(), Some(&phone), "{name} vs {envelope}");
    }
}

#[test]
fn bare_reactions() {
    for (name, envelope) in [
        ("reaction.created.json", "reaction.created.envelope.json"),
        ("reaction.updated.json", "reaction.updated.envelope.json"),
    ] {
        let bytes = read(name);
        let reaction: Reaction<'_> =
            serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_doc_reaction(&reaction);
        assert_eq!(decode_delivery(envelope).event().reaction(), Some(&reaction), "{name} vs {envelope}");
    }
}

#[test]
fn bare_ticket_infos() {
    for (name, envelope, compact) in [
        ("ticket.created.json", "ticket.created.envelope.json", false),
        ("ticket.updated.json", "ticket.updated.envelope.json", false),
        ("ticket.deleted.json", "ticket.deleted.envelope.json", true),
    ] {
        let bytes = read(name);
        let info: TicketInfo<'_> =
            serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_doc_ticket_info(&info, compact);
        assert_eq!(decode_delivery(envelope).event().ticket(), Some(&info), "{name} vs {envelope}");
    }
}

#[test]
fn bare_ticket_updated_is_the_same_object_as_ticket_created() {
    let created_bytes = read("ticket.created.json");
    let created: TicketInfo<'_> = serde_json::from_slice(&created_bytes).unwrap();
    let updated_bytes = read("ticket.updated.json");
    let updated: TicketInfo<'_> = serde_json::from_slice(&updated_bytes).unwrap();
    assert_eq!(created, updated);
}

// ---------------------------------------------------------------------------------------------
// The signature test vector's body is a delivery too.
// ---------------------------------------------------------------------------------------------

#[test]
fn signature_test_vector_body_is_a_reaction_created_delivery() {
    let vector: serde_json::Value = serde_json::from_slice(&read("signature-test-vector.json")).unwrap();
    let body = vector["body"].as_str().expect("body is a string");
    assert_eq!(body.len() as u64, vector["body_byte_length"].as_u64().unwrap());
    assert_eq!(vector["header_name"], "x-periskope-signature");

    let event = Event::from_slice(body.as_bytes()).unwrap();
    assert_eq!(event.kind(), EventKind::ReactionCreated);
    assert!(event.is_typed());
    assert_eq!(event.org_id.as_deref(), Some(ORG_ID));
    assert_eq!(millis(&event.timestamp), Some(ENVELOPE_MILLIS));
    assert_doc_reaction(event.reaction().unwrap());

    let owned = WebhookEvent::decode(Bytes::copy_from_slice(body.as_bytes())).unwrap();
    assert_eq!(owned.event(), &event);
    // The compact body is the compact form of the pretty-printed envelope fixture.
    let pretty = decode_delivery("reaction.created.envelope.json");
    assert_eq!(pretty.event(), &event);
    // Compact JSON: `data` is a single-line slice of the body.
    let raw = owned.raw_data().unwrap();
    let raw = raw.get();
    assert!(
        raw.starts_with(r#"{"org_id":"2997dd64"#)
            && raw.ends_with(r#""unique_id":"3EB01F4653BB9DD05E9859"}"#)
    );
    // Nothing in the body is escaped, so every string borrows from it.
    let reaction = event.reaction().unwrap();
    assert!(reaction.reaction.as_ref().unwrap().is_borrowed());
    assert!(reaction.id.as_ref().unwrap().serialized.as_ref().unwrap().is_borrowed());
}
