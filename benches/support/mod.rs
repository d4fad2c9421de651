//! Bodies shared by the benchmarks.

/// The fixture as Periskope sends it: compact, keys in their original order (`event` first).
///
/// Going through `serde_json::Value` would sort the keys and put `data` before `event`.
pub fn compact(fixture: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/deliveries/{fixture}", env!("CARGO_MANIFEST_DIR"));
    periskope_webhook::testing::compact_json(&std::fs::read(&path).expect("fixture exists"))
}

/// The message.created fixture with `data` first (as a sender that sorts keys writes it) and a
/// long text full of escapes and non-ASCII characters in `body` and `prev_body`.
pub fn data_first_escaped_text() -> Vec<u8> {
    let envelope = String::from_utf8(compact("message.created.envelope.json")).expect("UTF-8");
    let data_start = envelope.find(r#""data":{"#).expect("data") + r#""data":"#.len();
    let data_end = envelope.find(r#"},"org_id""#).expect("envelope after data") + 1;
    let line = r#"Ol\u00e1 \"Ana\"! Seu pedido n\u00ba 4521 est\u00e1 a caminho \ud83d\ude9a\n\tPrevis\u00e3o: amanh\u00e3 \u2014 obrigado! Caf\u00e9 ☕ — “entregue” \\ ok\r\n"#;
    let text = line.repeat(6);
    let data = envelope[data_start..data_end]
        .replace(r#""body":"Hello, world""#, &format!(r#""body":"{text}""#))
        .replace(r#""prev_body":null"#, &format!(r#""prev_body":"{text}""#));
    let tail = &envelope[data_end..envelope.len() - 1];
    format!(r#"{{"data":{data}{tail},"event":"message.created"}}"#).into_bytes()
}

/// A `message.deleted` as a deletion often arrives: ids, and `null` for everything else.
pub fn sparse_message_deleted() -> Vec<u8> {
    message_deleted_with_nulls(&[
        "ack",
        "author",
        "body",
        "broadcast",
        "device_type",
        "flag_status",
        "duration",
        "forwarding_score",
        "from",
        "from_me",
        "has_media",
        "has_quoted_msg",
        "has_reaction",
        "id",
        "invite_v4",
        "is_ephemeral",
        "is_forwarded",
        "is_gif",
        "is_starred",
        "is_status",
        "links",
        "location",
        "media_key",
        "mentioned_ids",
        "order_id",
        "raw_data",
        "to",
        "token",
        "message_type",
        "vcards",
        "broadcast_id",
        "media",
        "performed_by",
        "prev_body",
        "quoted_message_id",
        "sender_phone",
        "sent_message_id",
        "delivery_info",
    ])
}

/// A `message.deleted` under 1 KB: ids, and `null` for the few fields a short deletion carries.
pub fn small_message_deleted() -> Vec<u8> {
    message_deleted_with_nulls(&["ack", "author", "body", "media", "prev_body"])
}

/// A `message.deleted` with its ids, and `null` for each of `nulls`.
fn message_deleted_with_nulls(nulls: &[&str]) -> Vec<u8> {
    let nulls: String = nulls.iter().map(|key| format!(r#","{key}":null"#)).collect();
    format!(
        concat!(
            r#"{{"event":"message.deleted","data":{{"#,
            r#""message_id":"true_120363297269670000@g.us_3EB01F465309905E9859_919004300000@c.us","#,
            r#""org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5","chat_id":"120363297269670000@g.us","#,
            r#""org_phone":"919004300000@c.us","timestamp":"2024-05-13 11:19:34+00","is_deleted":true{}}},"#,
            r#""org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5","previous_attributes":{{"is_deleted":null}},"#,
            r#""timestamp":"2025-01-20T07:51:48.209+00:00"}}"#
        ),
        nulls
    )
    .into_bytes()
}

/// A short text `message.created` under 1 KB, named by `event_type` instead of `event`.
pub fn small_message_event_type() -> Vec<u8> {
    concat!(
        r#"{"event_type":"message.created","data":{"#,
        r#""message_id":"false_919876500000@c.us_3EB0A1B2C3D4E5F60718_919004300000@c.us","#,
        r#""org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5","ack":"1","author":null,"#,
        r#""body":"Hi, is the order on its way?","device_type":"ios","forwarding_score":"0","#,
        r#""from":"919876500000@c.us","from_me":false,"has_media":false,"has_quoted_msg":false,"#,
        r#""id":{"id":"3EB0A1B2C3D4E5F60718","fromMe":false,"remote":"919876500000@c.us","#,
        r#""_serialized":"false_919876500000@c.us_3EB0A1B2C3D4E5F60718"},"links":"[]","#,
        r#""mentioned_ids":[],"to":"919004300000@c.us","message_type":"chat","vcards":[],"#,
        r#""chat_id":"919876500000@c.us","timestamp":"2025-01-20 07:51:47+00","#,
        r#""org_phone":"919004300000@c.us","sender_phone":"919876500000@c.us","#,
        r#""unique_id":"3EB0A1B2C3D4E5F60718"},"#,
        r#""org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5","timestamp":"2025-01-20T07:51:48.209+00:00"}"#
    )
    .as_bytes()
    .to_vec()
}

/// A `message.ack.updated` under 1 KB as acks often arrive: `ack` and `forwarding_score` as
/// integers, a short text.
pub fn small_ack_updated() -> Vec<u8> {
    concat!(
        r#"{"event":"message.ack.updated","data":{"#,
        r#""message_id":"true_919876500000@c.us_3EB0C7D8E9F0A1B2C3D4_919004300000@c.us","#,
        r#""org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5","ack":3,"author":null,"#,
        r#""body":"Your order has shipped","device_type":"web","forwarding_score":0,"#,
        r#""from":"919004300000@c.us","from_me":true,"has_media":false,"has_quoted_msg":false,"#,
        r#""id":{"id":"3EB0C7D8E9F0A1B2C3D4","fromMe":true,"remote":"919876500000@c.us","#,
        r#""_serialized":"true_919876500000@c.us_3EB0C7D8E9F0A1B2C3D4"},"#,
        r#""to":"919876500000@c.us","message_type":"chat","chat_id":"919876500000@c.us","#,
        r#""timestamp":"2025-01-20 07:51:47+00","org_phone":"919004300000@c.us","#,
        r#""sender_phone":"919004300000@c.us","unique_id":"3EB0C7D8E9F0A1B2C3D4"},"#,
        r#""org_id":"2997dd64-89bf-48d3-9a22-b314fca017e5","previous_attributes":{"ack":2},"#,
        r#""timestamp":"2025-01-20T07:51:52.114+00:00"}"#
    )
    .as_bytes()
    .to_vec()
}

/// A private note carrying its attachment inline: `attachment_bytes` of base64 in
/// `media.filedata`.
pub fn note_with_attachment(attachment_bytes: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // A fixed pseudo-random sequence, so that every run decodes the same bytes.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let base64: String = (0..attachment_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % 64) as usize])
        })
        .collect();
    let note = String::from_utf8(compact("note.created.envelope.json")).expect("UTF-8");
    note.replace("UklGRkKAAABXQVZFZm10IBAAAAABAAEAQB8A...", &base64).into_bytes()
}

/// A bench body's name and how to build it.
type NamedBody = (&'static str, fn() -> Vec<u8>);

/// Every body the decode benchmarks measure.
const BODIES: [NamedBody; 11] = [
    ("message.created", || compact("message.created.envelope.json")),
    ("ticket.created", || compact("ticket.created.envelope.json")),
    ("reaction.created", || compact("reaction.created.envelope.json")),
    ("message.ack.updated/small-integer-ack", small_ack_updated),
    ("chat.notification.created", || compact("chat.notification.created.envelope.json")),
    ("chat.created/1500-members", || large_group_chat(1500)),
    ("message.created/data-first-escaped", data_first_escaped_text),
    ("message.deleted/sparse", sparse_message_deleted),
    ("message.deleted/small-nulls", small_message_deleted),
    ("message.created/event_type-small", small_message_event_type),
    ("note.created/450KB-attachment", || note_with_attachment(450 * 1024)),
];

/// Every body the decode benchmarks measure, with its name.
pub fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    BODIES.iter().map(|(name, build)| (*name, build())).collect()
}

/// The bench body called `name`, built alone (the large ones take a while under valgrind).
pub fn body(name: &str) -> Vec<u8> {
    let (_, build) = BODIES.iter().find(|(body, _)| *body == name).expect("a bench body");
    build()
}

/// A group chat.created with `members` members, built from the chat fixture's member shape.
pub fn large_group_chat(members: usize) -> Vec<u8> {
    let mut members_map = serde_json::Map::new();
    for i in 0..members {
        let id = format!("91{:010}@c.us", 9_000_000_000u64 + i as u64);
        members_map.insert(
            id.clone(),
            serde_json::json!({
                "org_id": "2997dd64-89bf-48d3-9a22-b314fca017e5",
                "chat_id": "120363297269676566@g.us",
                "is_admin": i % 50 == 0,
                "org_phone": "918527184400@c.us",
                "contact_id": id,
                "is_internal": false,
                "contact_name": format!("Member {i}"),
                "contact_color": "#B4876E",
                "contact_image": format!("https://storage.googleapis.com/periskope-images/2997dd64-89bf-48d3-9a22-b314fca017e5%2F{id}.jpg?timestamp=1737689973340"),
                "is_super_admin": false
            }),
        );
    }
    let body = serde_json::json!({
        "event": "chat.created",
        "data": {
            "org_id": "2997dd64-89bf-48d3-9a22-b314fca017e5",
            "chat_id": "120363297269676566@g.us",
            "members": members_map,
            "is_muted": false,
            "chat_name": "Large group",
            "chat_type": "group",
            "org_phone": "918527184400@c.us",
            "created_at": "2025-01-18T14:51:03+00:00",
            "updated_at": "2025-01-27T11:08:10.696758+00:00",
            "member_count": members
        },
        "org_id": "2997dd64-89bf-48d3-9a22-b314fca017e5",
        "timestamp": "2025-01-20T07:51:48.209+00:00"
    });
    serde_json::to_vec(&body).expect("serialises")
}
