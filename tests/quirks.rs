//! One focused test per quirk of the Periskope wire format (SPEC §1, §3, §4). Each would fail if
//! the decoder did not handle its quirk.

use bytes::Bytes;
use periskope_webhook::event::{
    Ack, Chat, ChatMember, ChatNotification, ChatType, DataError, DecodeError, Event, EventData, EventKind,
    Links, Message, MessageType, Note, NotificationType, Phone, RawJson, Reaction, Str, Ticket, TicketInfo,
    TicketStatus, Timestamp, WaId, WaState, WebhookEvent,
};

fn message(json: &str) -> Message<'_> {
    serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"))
}

fn reaction(json: &str) -> Reaction<'_> {
    serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"))
}

fn ticket(json: &str) -> Ticket<'_> {
    serde_json::from_str(json).unwrap_or_else(|error| panic!("{json}: {error}"))
}

fn event(json: &str) -> Event<'_> {
    Event::from_json(json).unwrap_or_else(|error| panic!("{json}: {error}"))
}

fn undecodable<'e>(event: &'e Event<'_>) -> (EventKind, &'e RawJson<'e>, &'e DataError) {
    match &event.data {
        EventData::Undecodable { kind, data, error } => (*kind, data, error),
        other => panic!("expected Undecodable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// §4.2 Numbers as strings or numbers.
// ---------------------------------------------------------------------------------------------

#[test]
fn ack_as_string_number_null_or_empty() {
    assert_eq!(message(r#"{"ack":"2"}"#).ack, Some(Ack::Delivered));
    assert_eq!(message(r#"{"ack":4}"#).ack, Some(Ack::Read));
    assert_eq!(message(r#"{"ack":"-1"}"#).ack, Some(Ack::Failed));
    assert_eq!(message(r#"{"ack":-1}"#).ack, Some(Ack::Failed));
    assert_eq!(message(r#"{"ack":"5"}"#).ack, Some(Ack::ReadByAll));
    assert_eq!(message(r#"{"ack":null}"#).ack, None);
    assert_eq!(message(r#"{"ack":""}"#).ack, None);
    assert_eq!(reaction(r#"{"ack":"0"}"#).ack, Some(Ack::Pending));
    assert_eq!(reaction(r#"{"ack":1}"#).ack, Some(Ack::Server));
    assert_eq!(reaction(r#"{"ack":null}"#).ack, None);
    let note: Note<'_> = serde_json::from_str(r#"{"ack":"3"}"#).unwrap();
    assert_eq!(note.ack, Some(Ack::DeliveredToAll));
    // Ack on its own (not through a field helper) reads both forms too.
    assert_eq!(serde_json::from_str::<Ack>(r#""4""#).unwrap(), Ack::Read);
    assert_eq!(serde_json::from_str::<Ack>("4").unwrap(), Ack::Read);
    assert_eq!(serde_json::to_string(&Ack::Read).unwrap(), "4");
}

#[test]
fn orphan_as_string_number_or_null() {
    assert_eq!(reaction(r#"{"orphan":"0"}"#).orphan, Some(0));
    assert_eq!(reaction(r#"{"orphan":"1"}"#).orphan, Some(1));
    assert_eq!(reaction(r#"{"orphan":1}"#).orphan, Some(1));
    assert_eq!(reaction(r#"{"orphan":null}"#).orphan, None);
    assert_eq!(reaction(r#"{"orphan":""}"#).orphan, None);
}

#[test]
fn forwarding_score_as_string_or_number() {
    assert_eq!(message(r#"{"forwarding_score":"0"}"#).forwarding_score, Some(0));
    assert_eq!(message(r#"{"forwarding_score":"127"}"#).forwarding_score, Some(127));
    assert_eq!(message(r#"{"forwarding_score":4}"#).forwarding_score, Some(4));
    // A JavaScript sender may write an integral float.
    assert_eq!(message(r#"{"forwarding_score":4.0}"#).forwarding_score, Some(4));
    assert_eq!(message(r#"{"forwarding_score":null}"#).forwarding_score, None);
    assert_eq!(message(r#"{"forwarding_score":""}"#).forwarding_score, None);
}

#[test]
fn duration_as_string_or_number() {
    assert_eq!(message(r#"{"duration":"12"}"#).duration, Some(12.0));
    assert_eq!(message(r#"{"duration":"12.5"}"#).duration, Some(12.5));
    assert_eq!(message(r#"{"duration":12}"#).duration, Some(12.0));
    assert_eq!(message(r#"{"duration":7.25}"#).duration, Some(7.25));
    assert_eq!(message(r#"{"duration":null}"#).duration, None);
    assert_eq!(message(r#"{"duration":""}"#).duration, None);
}

#[test]
fn ticket_priority_as_number_string_null_or_empty() {
    assert_eq!(ticket(r#"{"priority":2}"#).priority, Some(2));
    assert_eq!(ticket(r#"{"priority":"2"}"#).priority, Some(2));
    assert_eq!(ticket(r#"{"priority":"0"}"#).priority, Some(0));
    assert_eq!(ticket(r#"{"priority":null}"#).priority, None);
    assert_eq!(ticket(r#"{"priority":""}"#).priority, None);
    // Through a whole delivery too.
    let body = r#"{"event":"ticket.updated","data":{"ticket":{"priority":"4","status":"closed"}}}"#;
    let ticket = event(body).ticket().unwrap().ticket.clone().unwrap();
    assert_eq!((ticket.priority, ticket.status), (Some(4), Some(TicketStatus::Closed)));
}

#[test]
fn media_size_and_dimensions_as_strings_or_numbers() {
    let m = message(r#"{"media":{"size":"19940","dimensions":{"width":"512","height":512,"ar":"1.5"}}}"#);
    let media = m.media.unwrap();
    assert_eq!(media.size, Some(19_940));
    let dimensions = media.dimensions.unwrap();
    assert_eq!((dimensions.width, dimensions.height, dimensions.ar), (Some(512), Some(512), Some(1.5)));
}

// ---------------------------------------------------------------------------------------------
// §4.3 links.
// ---------------------------------------------------------------------------------------------

#[test]
fn links_as_json_string_holding_an_empty_array() {
    let m = message(r#"{"links":"[]"}"#);
    assert_eq!(m.links, Some(Links::List(Vec::new())));
    assert!(m.links.unwrap().is_empty());
}

#[test]
fn links_as_string_holding_a_non_empty_array() {
    let m = message(r#"{"links":"[{\"link\":\"https://periskope.app\",\"isSuspicious\":false}, 7]"}"#);
    let links = m.links.unwrap();
    let Links::List(items) = &links else { panic!("{links:?}") };
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].get(), r#"{"link":"https://periskope.app","isSuspicious":false}"#);
    assert_eq!(items[1].get(), "7");
    let first: serde_json::Value = items[0].parse().unwrap();
    assert_eq!(first["link"], "https://periskope.app");
    assert!(!links.is_empty());
}

#[test]
fn links_as_array() {
    let m = message(
        r#"{"links":[{"link":"https://a.example","isSuspicious":true},{"link":"https://b.example"}]}"#,
    );
    let links = m.links.unwrap();
    assert_eq!(links.items().len(), 2);
    assert_eq!(links.items()[0].get(), r#"{"link":"https://a.example","isSuspicious":true}"#);
    assert_eq!(links.items()[1].get(), r#"{"link":"https://b.example"}"#);
    assert_eq!(message(r#"{"links":[]}"#).links, Some(Links::List(Vec::new())));
}

#[test]
fn links_as_a_string_that_is_not_an_array_is_kept_as_text() {
    for text in ["https://periskope.app", "", "{}", "[unclosed", "null"] {
        let json = serde_json::json!({ "links": text }).to_string();
        let m: Message<'_> = serde_json::from_str(&json).unwrap();
        let links = m.links.unwrap_or_else(|| panic!("{text:?} dropped"));
        assert_eq!(links, Links::Text(Str::from(text)), "{text:?}");
        assert!(links.items().is_empty());
        // Written back as the same string.
        assert_eq!(serde_json::to_value(&links).unwrap(), serde_json::json!(text));
    }
    assert_eq!(message(r#"{"links":null}"#).links, None);
}

// ---------------------------------------------------------------------------------------------
// §1.6 / §4.4 WaId key aliases.
// ---------------------------------------------------------------------------------------------

#[test]
fn wa_id_accepts_from_me_and_serialized_spellings() {
    let spellings = [
        r#"{"id":"3EB0","fromMe":true,"remote":"1203@g.us","_serialized":"true_1203@g.us_3EB0"}"#,
        r#"{"id":"3EB0","from_me":true,"remote":"1203@g.us","serialized":"true_1203@g.us_3EB0"}"#,
        r#"{"id":"3EB0","fromMe":true,"remote":"1203@g.us","serialized":"true_1203@g.us_3EB0"}"#,
        r#"{"id":"3EB0","from_me":true,"remote":"1203@g.us","_serialized":"true_1203@g.us_3EB0"}"#,
    ];
    let expected = WaId::new("3EB0", true, "1203@g.us", "true_1203@g.us_3EB0");
    for json in spellings {
        let id: WaId<'_> = serde_json::from_str(json).unwrap();
        assert_eq!(id, expected, "{json}");
        assert_eq!(id.from_me, Some(true));
        assert_eq!(id.serialized.as_deref(), Some("true_1203@g.us_3EB0"));
    }
    // Written in the webhook spelling.
    let written = serde_json::to_value(&expected).unwrap();
    assert_eq!(written["fromMe"], true);
    assert_eq!(written["_serialized"], "true_1203@g.us_3EB0");
    assert!(written.get("from_me").is_none() && written.get("serialized").is_none());
    // Inside objects: a reaction's msg_id in REST spelling, a notification's id.
    let r = reaction(r#"{"msg_id":{"from_me":false,"serialized":"false_x_y"}}"#);
    assert_eq!(r.msg_id.as_ref().unwrap().from_me, Some(false));
    assert_eq!(r.msg_id.unwrap().serialized.as_deref(), Some("false_x_y"));
    let n: ChatNotification<'_> =
        serde_json::from_str(r#"{"id":{"fromMe":true,"serialized":"n_remove"}}"#).unwrap();
    assert_eq!(n.id.unwrap().serialized.as_deref(), Some("n_remove"));
}

// ---------------------------------------------------------------------------------------------
// §1.4 / §4.5 Timestamp formats.
// ---------------------------------------------------------------------------------------------

fn message_timestamp(json_value: &str) -> Timestamp<'static> {
    let json = format!(r#"{{"timestamp":{json_value}}}"#);
    let m: Message<'_> = serde_json::from_str(&json).unwrap_or_else(|error| panic!("{json}: {error}"));
    m.timestamp.expect("timestamp kept").into_owned()
}

#[test]
fn timestamp_space_separator_with_hour_only_offset() {
    let t = message_timestamp(r#""2024-05-13 11:22:14+00""#);
    assert_eq!(t.as_text(), Some("2024-05-13 11:22:14+00"));
    assert_eq!(t.unix_millis(), Some(1_715_599_334_000));
    assert_eq!(t.parse().unwrap().offset_seconds(), 0);
}

#[test]
fn timestamp_with_milliseconds() {
    let t = message_timestamp(r#""2025-01-11T11:52:27.231+00:00""#);
    assert_eq!(t.unix_millis(), Some(1_736_596_347_231));
    assert_eq!(t.parse().unwrap().subsec_nanos(), 231_000_000);
}

#[test]
fn timestamp_with_microseconds() {
    let t = message_timestamp(r#""2024-12-15T11:47:26.668505+00:00""#);
    assert_eq!(t.unix_millis(), Some(1_734_263_246_668));
    assert_eq!(t.parse().unwrap().subsec_nanos(), 668_505_000);
}

#[test]
fn timestamp_with_one_fractional_digit() {
    let t = message_timestamp(r#""2025-01-17T08:44:02.6+00:00""#);
    assert_eq!(t.unix_millis(), Some(1_737_103_442_600));
}

#[test]
fn timestamp_without_fraction() {
    let t = message_timestamp(r#""2024-05-13T17:27:15+00:00""#);
    assert_eq!(t.unix_millis(), Some(1_715_621_235_000));
    assert_eq!(t.parse().unwrap().unix_seconds(), 1_715_621_235);
}

#[test]
fn timestamp_with_z_suffix() {
    let t = message_timestamp(r#""2025-08-15T00:00:00Z""#);
    assert_eq!(t.unix_millis(), Some(1_755_216_000_000));
}

#[test]
fn timestamp_with_non_utc_offsets() {
    let expected = Some((1_715_621_235 - 19_800) * 1000);
    assert_eq!(message_timestamp(r#""2024-05-13T17:27:15+05:30""#).unix_millis(), expected);
    assert_eq!(message_timestamp(r#""2024-05-13T17:27:15+0530""#).unix_millis(), expected);
    assert_eq!(
        message_timestamp(r#""2024-05-13 17:27:15-03""#).unix_millis(),
        Some((1_715_621_235 + 10_800) * 1000)
    );
    assert_eq!(message_timestamp(r#""2024-05-13T17:27:15+05:30""#).parse().unwrap().offset_seconds(), 19_800);
}

#[test]
fn timestamp_as_epoch_milliseconds_number() {
    let t = message_timestamp("1731984657443");
    assert_eq!(t, Timestamp::Number(1_731_984_657_443));
    assert_eq!(t.as_number(), Some(1_731_984_657_443));
    assert_eq!(t.as_text(), None);
    assert_eq!(t.unix_millis(), Some(1_731_984_657_443));
    // Chats carry numbers too (closed_at, latest_message_timestamp).
    let chat: Chat<'_> = serde_json::from_str(
        r#"{"closed_at":1731984657443,"latest_message_timestamp":"2024-05-13 11:22:14+00"}"#,
    )
    .unwrap();
    assert_eq!(chat.closed_at.unwrap().unix_millis(), Some(1_731_984_657_443));
    assert_eq!(chat.latest_message_timestamp.unwrap().unix_millis(), Some(1_715_599_334_000));
    // And the envelope's own timestamp.
    let e = event(r#"{"event":"note.created","data":{},"timestamp":1737359508209}"#);
    assert_eq!(e.timestamp.unwrap().unix_millis(), Some(1_737_359_508_209));
}

#[test]
fn all_documented_formats_agree_on_one_instant() {
    let instant = Some(1_715_599_334_000);
    for text in [
        "2024-05-13 11:22:14+00",
        "2024-05-13T11:22:14+00:00",
        "2024-05-13T11:22:14.000+00:00",
        "2024-05-13T11:22:14.000000+00:00",
        "2024-05-13T11:22:14.0+00:00",
        "2024-05-13T11:22:14Z",
        "2024-05-13T16:52:14+05:30",
    ] {
        assert_eq!(Timestamp::from(text).unix_millis(), instant, "{text}");
    }
    assert_eq!(Timestamp::Number(1_715_599_334_000).unix_millis(), instant);
}

#[test]
fn unparseable_timestamp_is_kept_not_rejected() {
    let body = r#"{"event":"message.created","data":{"timestamp":"next tuesday","updated_at":"2024-13-45"},
                   "timestamp":"yesterday-ish"}"#;
    let e = event(body);
    assert!(e.is_typed(), "{:?}", e.data_error());
    let m = e.message().unwrap();
    assert_eq!(m.timestamp.as_ref().unwrap().as_text(), Some("next tuesday"));
    assert_eq!(m.timestamp.as_ref().unwrap().parse(), None);
    assert_eq!(m.updated_at.as_ref().unwrap().as_text(), Some("2024-13-45"));
    assert_eq!(m.updated_at.as_ref().unwrap().unix_millis(), None);
    assert_eq!(e.timestamp.as_ref().unwrap().as_text(), Some("yesterday-ish"));
    assert_eq!(e.timestamp.as_ref().unwrap().unix_millis(), None);
}

#[test]
fn extreme_numeric_timestamps_do_not_panic() {
    // Any i64 is a valid JSON timestamp; reading it must not overflow.
    let body = r#"{"event":"message.created","data":{"timestamp":-9223372036854775808},"timestamp":9223372036854775807}"#;
    let e = event(body);
    let data_time = e.message().unwrap().timestamp.clone().unwrap();
    assert_eq!(data_time, Timestamp::Number(i64::MIN));
    let envelope_time = e.timestamp.clone().unwrap();
    assert_eq!(envelope_time, Timestamp::Number(i64::MAX));
    for stamp in [
        data_time,
        envelope_time,
        Timestamp::Number(i64::MIN + 1),
        Timestamp::Number(-9_223_372_036_854_775_001),
    ] {
        // Either a value or None; a debug-build overflow panic is a bug.
        let _ = stamp.unix_millis();
        let _ = stamp.parse().map(|time| (time.unix_seconds(), time.to_system_time()));
    }
}

// ---------------------------------------------------------------------------------------------
// §4.6 Open enums.
// ---------------------------------------------------------------------------------------------

#[test]
fn message_type_unknown_value_is_kept() {
    assert_eq!(message(r#"{"message_type":"ptt"}"#).message_type, Some(MessageType::Ptt));
    assert_eq!(message(r#"{"message_type":"poll_creation"}"#).message_type, Some(MessageType::PollCreation));
    let m = message(r#"{"message_type":"interactive_list"}"#);
    assert_eq!(m.message_type, Some(MessageType::Other("interactive_list".to_owned())));
    assert_eq!(m.message_type.as_ref().unwrap().as_str(), "interactive_list");
    assert!(!m.message_type.as_ref().unwrap().is_known());
    assert_eq!(serde_json::to_string(&m.message_type).unwrap(), r#""interactive_list""#);
}

#[test]
fn chat_type_beyond_the_documented_set() {
    for (text, expected) in [
        ("group", ChatType::Group),
        ("user", ChatType::User),
        ("business", ChatType::Business),
        ("chat", ChatType::Chat),
        ("individual", ChatType::Individual),
        ("unknown", ChatType::Unknown),
        ("community", ChatType::Other("community".to_owned())),
        ("Group", ChatType::Other("Group".to_owned())),
    ] {
        let json = format!(r#"{{"chat_type":"{text}"}}"#);
        let chat: Chat<'_> = serde_json::from_str(&json).unwrap();
        assert_eq!(chat.chat_type, Some(expected), "{text}");
    }
}

#[test]
fn ticket_status_unknown_value_is_kept() {
    assert_eq!(ticket(r#"{"status":"inprogress"}"#).status, Some(TicketStatus::InProgress));
    assert_eq!(ticket(r#"{"status":"archived"}"#).status, Some(TicketStatus::Archived));
    assert_eq!(ticket(r#"{"status":"snoozed"}"#).status, Some(TicketStatus::Other("snoozed".to_owned())));
}

#[test]
fn wa_state_unknown_value_is_kept() {
    let phone: Phone<'_> = serde_json::from_str(r#"{"wa_state":"QR_PENDING"}"#).unwrap();
    assert_eq!(phone.wa_state, Some(WaState::Other("QR_PENDING".to_owned())));
    let phone: Phone<'_> = serde_json::from_str(r#"{"wa_state":"DISCONNECTED"}"#).unwrap();
    assert_eq!(phone.wa_state, Some(WaState::Disconnected));
    // Case matters: the docs write upper case.
    let phone: Phone<'_> = serde_json::from_str(r#"{"wa_state":"connected"}"#).unwrap();
    assert_eq!(phone.wa_state, Some(WaState::Other("connected".to_owned())));
}

#[test]
fn notification_type_unknown_value_is_kept() {
    let n: ChatNotification<'_> = serde_json::from_str(r#"{"type":"memberaddmode_true"}"#).unwrap();
    assert_eq!(n.notification_type, Some(NotificationType::MemberAddModeTrue));
    let n: ChatNotification<'_> = serde_json::from_str(r#"{"type":"ephemeral_on"}"#).unwrap();
    assert_eq!(n.notification_type, Some(NotificationType::Other("ephemeral_on".to_owned())));
}

#[test]
fn ack_unknown_code_is_kept() {
    assert_eq!(message(r#"{"ack":"7"}"#).ack, Some(Ack::Other(7)));
    assert_eq!(message(r#"{"ack":7}"#).ack, Some(Ack::Other(7)));
    assert_eq!(message(r#"{"ack":"-2"}"#).ack, Some(Ack::Other(-2)));
    assert_eq!(Ack::Other(7).code(), 7);
    assert_eq!(serde_json::to_string(&Ack::Other(7)).unwrap(), "7");
}

#[test]
fn open_enum_escaped_values_match_known_arms() {
    let m = message(r#"{"message_type":"\u0069mage"}"#);
    assert_eq!(m.message_type, Some(MessageType::Image));
}

// ---------------------------------------------------------------------------------------------
// §4.12 Nullable and unknown fields.
// ---------------------------------------------------------------------------------------------

/// A JSON object with every field the type writes, each set to null.
fn all_null<T: serde::Serialize + Default>() -> String {
    let value = serde_json::to_value(T::default()).unwrap();
    let object = value.as_object().expect("an object");
    assert!(object.values().all(serde_json::Value::is_null));
    assert!(object.len() > 3);
    value.to_string()
}

#[test]
fn every_field_may_be_null() {
    let json = all_null::<Message<'_>>();
    assert_eq!(serde_json::from_str::<Message<'_>>(&json).unwrap(), Message::default());
    let json = all_null::<Reaction<'_>>();
    assert_eq!(serde_json::from_str::<Reaction<'_>>(&json).unwrap(), Reaction::default());
    let json = all_null::<Chat<'_>>();
    assert_eq!(serde_json::from_str::<Chat<'_>>(&json).unwrap(), Chat::default());
    let json = all_null::<ChatMember<'_>>();
    assert_eq!(serde_json::from_str::<ChatMember<'_>>(&json).unwrap(), ChatMember::default());
    let json = all_null::<ChatNotification<'_>>();
    assert_eq!(serde_json::from_str::<ChatNotification<'_>>(&json).unwrap(), ChatNotification::default());
    let json = all_null::<Note<'_>>();
    assert_eq!(serde_json::from_str::<Note<'_>>(&json).unwrap(), Note::default());
    let json = all_null::<TicketInfo<'_>>();
    assert_eq!(serde_json::from_str::<TicketInfo<'_>>(&json).unwrap(), TicketInfo::default());
    let json = all_null::<Ticket<'_>>();
    assert_eq!(serde_json::from_str::<Ticket<'_>>(&json).unwrap(), Ticket::default());
    let json = all_null::<Phone<'_>>();
    assert_eq!(serde_json::from_str::<Phone<'_>>(&json).unwrap(), Phone::default());
    let json = all_null::<WaId<'_>>();
    assert_eq!(serde_json::from_str::<WaId<'_>>(&json).unwrap(), WaId::default());
}

#[test]
fn every_field_may_be_absent() {
    let e = event(r#"{"event":"message.created","data":{}}"#);
    assert_eq!(e.message(), Some(&Message::default()));
    let e = event(
        r#"{"event":"ticket.created","data":{"chat":{},"ticket":{},"message":{},"attached_messages":[{}]}}"#,
    );
    let info = e.ticket().unwrap();
    assert_eq!(info.chat, Some(Chat::default()));
    assert_eq!(info.attached_messages.as_ref().unwrap().len(), 1);
}

#[test]
fn null_fields_inside_a_delivery() {
    let body = r#"{"event":"message.created","data":{"message_id":"m1","author":null,"has_media":null,
        "media":null,"id":null,"links":null,"delivery_info":null,"ack":null,"timestamp":null,"vcards":null},
        "org_id":null,"timestamp":null,"previous_attributes":null}"#;
    let e = event(body);
    assert!(e.is_typed());
    let m = e.message().unwrap();
    assert_eq!(m.message_id.as_deref(), Some("m1"));
    assert_eq!((m.author.as_ref(), m.has_media, m.media.as_ref(), m.id.as_ref()), (None, None, None, None));
    assert_eq!(
        (m.links.as_ref(), m.delivery_info.as_ref(), m.ack, m.timestamp.as_ref()),
        (None, None, None, None)
    );
    assert_eq!((e.org_id, e.timestamp, e.previous_attributes), (None, None, None));
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let body = r#"{"extra_top":{"nested":[1,2,{"x":null}]},"event":"chat.created","api_version":3,
        "data":{"chat_id":"1203@g.us","brand_new":true,
            "members":{"9190@c.us":{"contact_name":"Support","pushname":"S","verified_name":{"a":1}}},
            "latest_message":{"body":"hi","unheard_of":[{}],"id":{"id":"3EB0","fromMe":true,"participant":"x"},
                "media":{"size":1,"blurhash":"LKO2"}}},
        "org_id":"org-1","current_attributes":{},"timestamp":"2025-01-20T07:51:48.209+00:00"}"#;
    let e = event(body);
    assert!(e.is_typed(), "{:?}", e.data_error());
    assert_eq!(e.org_id.as_deref(), Some("org-1"));
    let chat = e.chat().unwrap();
    assert_eq!(chat.chat_id.as_deref(), Some("1203@g.us"));
    assert_eq!(
        chat.members.as_ref().unwrap().get("9190@c.us").unwrap().contact_name.as_deref(),
        Some("Support")
    );
    let latest = chat.latest_message.as_ref().unwrap();
    assert_eq!(latest.body.as_deref(), Some("hi"));
    assert_eq!(latest.id.as_ref().unwrap().id.as_deref(), Some("3EB0"));
    assert_eq!(latest.media.as_ref().unwrap().size, Some(1));
    // The same through the owned handle.
    let owned = WebhookEvent::decode(Bytes::copy_from_slice(body.as_bytes())).unwrap();
    assert_eq!(owned.event(), &e);
}

// ---------------------------------------------------------------------------------------------
// §1.3 / §4.1 The event name.
// ---------------------------------------------------------------------------------------------

#[test]
fn event_type_instead_of_event() {
    let e = event(r#"{"event_type":"reaction.updated","data":{"reaction":"👍"},"org_id":"o"}"#);
    assert_eq!(e.kind(), EventKind::ReactionUpdated);
    assert_eq!(e.name(), "reaction.updated");
    assert_eq!(e.reaction().unwrap().reaction.as_deref(), Some("👍"));
}

#[test]
fn event_wins_when_both_names_agree_or_event_type_is_null() {
    let e = event(r#"{"event":"note.created","event_type":"note.created","data":{"body":"n"}}"#);
    assert_eq!(e.kind(), EventKind::NoteCreated);
    let e = event(r#"{"event":null,"event_type":"note.created","data":{"body":"n"}}"#);
    assert_eq!(e.kind(), EventKind::NoteCreated);
    let e = event(r#"{"event":"note.created","event_type":null,"data":{"body":"n"}}"#);
    assert_eq!(e.kind(), EventKind::NoteCreated);
}

#[test]
fn event_wins_over_event_type_when_event_comes_first() {
    let e = event(
        r#"{"event":"message.created","event_type":"reaction.created","data":{"body":"hi","ack":"1"}}"#,
    );
    assert_eq!(e.kind(), EventKind::MessageCreated);
    assert_eq!(e.message().unwrap().body.as_deref(), Some("hi"));
}

#[test]
fn event_wins_when_event_type_comes_first_and_names_a_different_kind() {
    // `data` is read after `event_type` (as a Reaction) but before `event` (a Message).
    let body = r#"{"event_type":"reaction.created","data":{"body":"hi","ack":"4","reaction":"x"},
                   "event":"message.created","org_id":"o"}"#;
    let e = event(body);
    assert_eq!(e.kind(), EventKind::MessageCreated);
    assert!(e.is_typed());
    let m = e.message().unwrap();
    assert_eq!((m.body.as_deref(), m.ack), (Some("hi"), Some(Ack::Read)));
    assert_eq!(e.org_id.as_deref(), Some("o"));

    // The disagreeing earlier name typed `data` as a kind that would accept it, the winner not.
    let body = r#"{"event_type":"message.created","data":{"members":5},"event":"chat.created"}"#;
    let e = event(body);
    let (kind, data, error) = undecodable(&e);
    assert_eq!(kind, EventKind::ChatCreated);
    assert_eq!(data.get(), r#"{"members":5}"#);
    assert_eq!(error.path(), "data.members");

    // ... and the other way round: the earlier name's type rejects, the winner accepts.
    let body = r#"{"event_type":"chat.created","data":{"members":5,"body":"b"},"event":"message.created"}"#;
    let e = event(body);
    assert!(e.is_typed(), "{:?}", e.data_error());
    assert_eq!(e.message().unwrap().body.as_deref(), Some("b"));

    // A known event_type first, then an unknown event: the unknown name wins.
    let body = r#"{"event_type":"message.created","data":{"body":"b"},"event":"chat.label.updated"}"#;
    let e = event(body);
    assert_eq!(e.kind(), EventKind::Unknown);
    assert_eq!(e.name(), "chat.label.updated");
    assert_eq!(e.raw_data().unwrap().get(), r#"{"body":"b"}"#);
}

#[test]
fn event_wins_when_data_comes_before_both_names() {
    for body in [
        r#"{"data":{"body":"hi"},"event_type":"note.created","event":"message.created"}"#,
        r#"{"data":{"body":"hi"},"event":"message.created","event_type":"note.created"}"#,
    ] {
        let e = event(body);
        assert_eq!(e.kind(), EventKind::MessageCreated, "{body}");
        assert_eq!(e.message().unwrap().body.as_deref(), Some("hi"));
    }
}

#[test]
fn data_before_event_is_still_typed() {
    let body = r#"{"data":{"message_id":"m1","ack":"3","body":"plain"},"org_id":"o","event":"message.updated",
                   "timestamp":"2025-01-20T07:51:48.209+00:00"}"#;
    let e = event(body);
    assert_eq!(e.kind(), EventKind::MessageUpdated);
    assert!(e.is_typed());
    let m = e.message().unwrap();
    assert_eq!(m.message_id.as_deref(), Some("m1"));
    assert_eq!(m.ack, Some(Ack::DeliveredToAll));
    // Still borrowed from the body on the slower path.
    assert!(m.body.as_ref().unwrap().is_borrowed());
    assert!(e.org_id.as_ref().unwrap().is_borrowed());
    let owned = WebhookEvent::decode(Bytes::copy_from_slice(body.as_bytes())).unwrap();
    assert_eq!(owned.event(), &e);
    assert_eq!(owned.raw_data().unwrap().get(), r#"{"message_id":"m1","ack":"3","body":"plain"}"#);
}

#[test]
fn data_first_is_typed_whatever_names_appear_after_it() {
    // The decoder looks for the name after `data` to type it in one pass; a name-like text
    // later in the body (here in `previous_attributes` or a string) must not change the kind.
    for (body, kind) in [
        (
            r#"{"data":{"body":"hi"},"event":"message.created","previous_attributes":{"event":"note.created"}}"#,
            EventKind::MessageCreated,
        ),
        (
            r#"{"data":{"body":"hi"},"event":"note.created","org_id":"\"event\":\"x\""}"#,
            EventKind::NoteCreated,
        ),
        (
            r#"{"data":{"body":"hi","x":{"event":"message.created"}},"event_type":"note.created"}"#,
            EventKind::NoteCreated,
        ),
        (r#"{"data":{"body":"hi"} , "event" : "message.deleted" }"#, EventKind::MessageDeleted),
    ] {
        let e = event(body);
        assert_eq!(e.kind(), kind, "{body}");
        assert!(e.is_typed(), "{body}");
        let text = e.message().map(|m| m.body.clone()).unwrap_or_else(|| e.note().unwrap().body.clone());
        assert_eq!(text.as_deref(), Some("hi"), "{body}");
    }
}

#[test]
fn unknown_event_name_keeps_name_and_raw_data_exactly() {
    let data = r#"{ "label_id" : "label-x",  "nested": [1, 2.50, "\u00e9"] }"#;
    let body = format!(r#"{{"event":"chat.label.updated","data":{data},"org_id":"o","timestamp":"t"}}"#);
    let e = event(&body);
    assert_eq!(e.kind(), EventKind::Unknown);
    assert!(!e.is_typed());
    assert_eq!(e.name(), "chat.label.updated");
    let EventData::Unknown { name, data: raw } = &e.data else { panic!("{:?}", e.data) };
    assert_eq!(name, "chat.label.updated");
    assert_eq!(raw.get(), data);
    assert_eq!(e.raw_data().unwrap().get(), data);
    assert_eq!(e.org_id.as_deref(), Some("o"));
    // Data first, too.
    let body = format!(r#"{{"data":{data},"event_type":"org.created"}}"#);
    let e = event(&body);
    assert_eq!((e.kind(), e.name()), (EventKind::Unknown, "org.created"));
    assert_eq!(e.raw_data().unwrap().get(), data);
    // Names are case-sensitive.
    assert_eq!(event(r#"{"event":"Message.Created","data":{}}"#).kind(), EventKind::Unknown);
}

#[test]
fn unknown_event_without_data_keeps_null() {
    let e = event(r#"{"event":"org.member.created"}"#);
    assert_eq!(e.kind(), EventKind::Unknown);
    assert_eq!(e.raw_data().unwrap().get(), "null");
}

// ---------------------------------------------------------------------------------------------
// Misfitting data: known name, data that does not fit.
// ---------------------------------------------------------------------------------------------

#[test]
fn misfit_ack_is_undecodable_with_path_and_raw_data() {
    let data = r#"{"message_id":"m1", "ack":"abc"}"#;
    let body = format!(
        r#"{{"event":"message.ack.updated","data":{data},"org_id":"org-1","timestamp":"2025-01-20T07:51:48.209+00:00"}}"#
    );
    let e = event(&body);
    assert!(!e.is_typed());
    assert_eq!(e.kind(), EventKind::MessageAckUpdated);
    assert_eq!(e.name(), "message.ack.updated");
    let (kind, raw, error) = undecodable(&e);
    assert_eq!(kind, EventKind::MessageAckUpdated);
    assert_eq!(raw.get(), data);
    assert_eq!(error.path(), "data.ack");
    assert!(!error.reason().is_empty());
    assert!(error.to_string().contains("data.ack"));
    assert_eq!(e.data_error(), Some(error));
    assert_eq!(e.raw_data().unwrap().get(), data);
    // The envelope is intact.
    assert_eq!(e.org_id.as_deref(), Some("org-1"));
    assert_eq!(e.timestamp.as_ref().unwrap().unix_millis(), Some(1_737_359_508_209));
}

#[test]
fn misfit_nested_members_is_undecodable_with_nested_path() {
    let data = r#"{"chat":{"chat_id":"c","members":5},"ticket":{"ticket_id":"T-1"}}"#;
    let body = format!(r#"{{"event":"ticket.created","data":{data},"org_id":"org-1","timestamp":"ts"}}"#);
    let e = event(&body);
    let (kind, raw, error) = undecodable(&e);
    assert_eq!(kind, EventKind::TicketCreated);
    assert_eq!(error.path(), "data.chat.members");
    assert_eq!(raw.get(), data);
    assert_eq!(e.org_id.as_deref(), Some("org-1"));
    assert_eq!(e.timestamp.as_ref().unwrap().as_text(), Some("ts"));
    // The same through WebhookEvent: raw data is still a slice of the body.
    let owned = WebhookEvent::decode(Bytes::from(body.clone())).unwrap();
    assert_eq!(owned.raw_data().unwrap().get(), data);
    assert_eq!(owned.event().data_error().unwrap().path(), "data.chat.members");
}

#[test]
fn misfit_paths_through_maps_and_arrays() {
    let e = event(r#"{"event":"chat.created","data":{"members":{"9190@c.us":{"is_admin":"yes"}}}}"#);
    assert_eq!(e.data_error().unwrap().path(), "data.members.*.is_admin");
    let e = event(r#"{"event":"message.created","data":{"reactions":[{},{"orphan":"z"}]}}"#);
    assert_eq!(e.data_error().unwrap().path(), "data.reactions[1].orphan");
    let e = event(r#"{"event":"message.created","data":{"delivery_info":{"read":{"91@c.us":"soon"}}}}"#);
    assert_eq!(e.data_error().unwrap().path(), "data.delivery_info.read.*");
    let e = event(r#"{"event":"chat.notification.created","data":{"recipientids":["91@c.us",7]}}"#);
    assert_eq!(e.data_error().unwrap().path(), "data.recipientids[1]");
    let e = event(r#"{"event":"message.created","data":{"media":{"size":"big"}}}"#);
    assert_eq!(e.data_error().unwrap().path(), "data.media.size");
    let e = event(r#"{"event":"org.phone.updated","data":5}"#);
    assert_eq!(e.data_error().unwrap().path(), "data");
    assert_eq!(e.raw_data().unwrap().get(), "5");
}

#[test]
fn data_as_an_array_is_undecodable_not_read_positionally() {
    // `data` is an object (SPEC §1.2). A JSON array must not fill struct fields by position.
    for body in [
        r#"{"event":"message.created","data":["true_x@c.us_3EB0","org"]}"#,
        r#"{"data":["true_x@c.us_3EB0","org"],"event":"message.created"}"#,
    ] {
        let e = event(body);
        assert!(!e.is_typed(), "array data decoded as {:?}", e.data);
        assert_eq!(e.kind(), EventKind::MessageCreated);
        assert_eq!(e.raw_data().unwrap().get(), r#"["true_x@c.us_3EB0","org"]"#);
        assert_eq!(e.data_error().unwrap().path(), "data");
    }
}

#[test]
fn nested_objects_as_arrays_are_undecodable_not_read_positionally() {
    // The same for objects inside `data`: `id` is a WaId object, `media` a Media object.
    let e = event(r#"{"event":"message.created","data":{"id":["3EB0",true]}}"#);
    assert!(!e.is_typed(), "array id decoded as {:?}", e.message().and_then(|m| m.id.as_ref()));
    assert_eq!(e.data_error().unwrap().path(), "data.id");
    let e = event(r#"{"event":"ticket.created","data":{"ticket":["T-1","ticket-id"]}}"#);
    assert!(!e.is_typed(), "array ticket decoded as {:?}", e.ticket().and_then(|t| t.ticket.as_ref()));
    assert_eq!(e.data_error().unwrap().path(), "data.ticket");
}

#[test]
fn null_data_reads_the_same_in_either_key_order() {
    // The same document must give the same event, whichever key comes first.
    let event_first = event(r#"{"event":"message.created","data":null,"org_id":"o"}"#);
    let data_first = event(r#"{"data":null,"event":"message.created","org_id":"o"}"#);
    let absent = event(r#"{"event":"message.created","org_id":"o"}"#);
    assert_eq!(event_first, absent);
    assert_eq!(data_first, event_first);
}

#[test]
fn missing_data_on_a_known_event_is_undecodable() {
    for body in [
        r#"{"event":"message.created","org_id":"o"}"#,
        r#"{"event":"message.created","data":null,"org_id":"o"}"#,
    ] {
        let e = event(body);
        let (kind, raw, error) = undecodable(&e);
        assert_eq!(kind, EventKind::MessageCreated, "{body}");
        assert!(raw.is_null(), "{body}");
        assert_eq!(error.path(), "data", "{body}");
        assert_eq!(e.org_id.as_deref(), Some("o"));
    }
}

// ---------------------------------------------------------------------------------------------
// previous_attributes.
// ---------------------------------------------------------------------------------------------

#[test]
fn previous_attributes_absent_null_or_object() {
    assert_eq!(event(r#"{"event":"message.updated","data":{}}"#).previous_attributes, None);
    assert_eq!(
        event(r#"{"event":"message.updated","data":{},"previous_attributes":null}"#).previous_attributes,
        None
    );
    let e = event(r#"{"event":"message.updated","previous_attributes":{"body": "old", "n":[1]},"data":{}}"#);
    assert_eq!(e.previous_attributes.as_ref().unwrap().get(), r#"{"body": "old", "n":[1]}"#);
    let e = event(r#"{"event":"message.updated","data":{},"previous_attributes":{}}"#);
    assert_eq!(e.previous_attributes.as_ref().unwrap().get(), "{}");
    // Data first, then previous_attributes: the slower path keeps it too.
    let e = event(r#"{"data":{},"previous_attributes":{"ack":"1"},"event":"message.ack.updated"}"#);
    assert_eq!(e.previous_attributes.unwrap().get(), r#"{"ack":"1"}"#);
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

fn error_of(bytes: &[u8]) -> DecodeError {
    let error = Event::from_slice(bytes).expect_err(&String::from_utf8_lossy(bytes));
    let owned = WebhookEvent::decode(Bytes::copy_from_slice(bytes)).expect_err("owned decode fails too");
    assert_eq!(owned, error);
    error
}

#[test]
fn malformed_json() {
    for body in
        [&b"{\"event\":"[..], b"{\"event\" \"x\"}", b"", b"{\"event\":\"note.created\",}", b"{} trailing"]
    {
        let error = error_of(body);
        assert!(
            matches!(error, DecodeError::Malformed { .. }),
            "{:?} -> {error:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(error.code(), "malformed_json");
    }
    let DecodeError::Malformed { line, column } = error_of(b"{\n  \"event\": ]") else { panic!() };
    assert_eq!((line, column), (2, 12));
}

#[test]
fn non_object_bodies() {
    for body in ["[]", "[1,2]", r#"["message.created"]"#, r#""message.created""#, "5", "null", "true"] {
        let error = error_of(body.as_bytes());
        assert_eq!(error, DecodeError::NotAnObject, "{body}");
        assert_eq!(error.code(), "not_an_object");
    }
}

#[test]
fn array_shaped_like_an_envelope_is_not_an_object() {
    // serde's derived struct visitors accept sequences by position; an envelope must not.
    for body in [
        r#"["message.created",null,{"body":"x"},"org",null,null]"#,
        r#"["message.created",null,null,null,null,null]"#,
    ] {
        assert_eq!(Event::from_json(body), Err(DecodeError::NotAnObject), "{body}");
    }
}

#[test]
fn missing_event_name() {
    for body in [r#"{"data":{}}"#, "{}", r#"{"event":null,"data":{}}"#, r#"{"event":null,"event_type":null}"#]
    {
        let error = error_of(body.as_bytes());
        assert_eq!(error, DecodeError::MissingEventName, "{body}");
        assert_eq!(error.code(), "missing_event_name");
    }
}

#[test]
fn invalid_utf8() {
    let error = error_of(b"{\"event\":\"\xff\"}");
    assert_eq!(error, DecodeError::InvalidUtf8 { valid_up_to: 10 });
    assert_eq!(error.code(), "invalid_utf8");
    assert!(!error.to_string().is_empty());
}

#[test]
fn envelope_field_of_the_wrong_type() {
    for body in [
        r#"{"event":5,"data":{}}"#,
        r#"{"event_type":["message.created"],"data":{}}"#,
        r#"{"event":"message.created","data":{},"org_id":7}"#,
        r#"{"event":"message.created","data":{},"timestamp":true}"#,
    ] {
        let error = error_of(body.as_bytes());
        assert!(matches!(error, DecodeError::InvalidEnvelope { .. }), "{body} -> {error:?}");
        assert_eq!(error.code(), "invalid_envelope");
    }
}

#[test]
fn duplicate_envelope_keys() {
    for body in [
        r#"{"event":"message.created","data":{},"data":{}}"#,
        r#"{"data":{},"event":"message.created","data":{"body":"second"}}"#,
        r#"{"event":"message.created","event":"note.created","data":{}}"#,
        r#"{"event":"message.created","data":{},"org_id":"a","org_id":"b"}"#,
    ] {
        let error = error_of(body.as_bytes());
        assert!(matches!(error, DecodeError::InvalidEnvelope { .. }), "{body} -> {error:?}");
        assert_eq!(error.code(), "invalid_envelope");
    }
    // Unknown keys may repeat: they are ignored.
    assert!(event(r#"{"x":1,"x":2,"event":"note.created","data":{}}"#).is_typed());
}

#[test]
fn error_codes_are_distinct() {
    let codes = [
        DecodeError::InvalidUtf8 { valid_up_to: 0 }.code(),
        DecodeError::Malformed { line: 1, column: 1 }.code(),
        DecodeError::NotAnObject.code(),
        DecodeError::MissingEventName.code(),
        DecodeError::InvalidEnvelope { line: 1, column: 1 }.code(),
    ];
    assert_eq!(
        codes,
        ["invalid_utf8", "malformed_json", "not_an_object", "missing_event_name", "invalid_envelope"]
    );
}

// ---------------------------------------------------------------------------------------------
// Borrowing, escapes, and the owned handle.
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_strings_borrow_from_the_body() {
    let body = r#"{"event":"message.created","data":{"body":"plain text","chat_id":"1203@g.us",
                   "id":{"_serialized":"true_1203@g.us_3EB0"},"members_ignored":1},"org_id":"org-1"}"#;
    let e = event(body);
    let m = e.message().unwrap();
    assert!(m.body.as_ref().unwrap().is_borrowed());
    assert!(m.chat_id.as_ref().unwrap().is_borrowed());
    assert!(m.id.as_ref().unwrap().serialized.as_ref().unwrap().is_borrowed());
    assert!(e.org_id.as_ref().unwrap().is_borrowed());
    // Borrowed means: a slice of the body itself.
    let range = body.as_bytes().as_ptr_range();
    assert!(range.contains(&m.body.as_ref().unwrap().as_ptr()));
}

#[test]
fn escaped_strings_decode_correctly_and_are_owned() {
    let body = r#"{"event":"message.created","data":{"body":"Line 1\nSaid \"hi\" \\ caf\u00e9 \ud83d\ude00","chat_id":"plain"}}"#;
    let e = event(body);
    let m = e.message().unwrap();
    let text = m.body.as_ref().unwrap();
    assert_eq!(text, "Line 1\nSaid \"hi\" \\ café 😀");
    assert!(!text.is_borrowed());
    assert!(m.chat_id.as_ref().unwrap().is_borrowed());
    // Raw UTF-8 (no escape) still borrows.
    let e = event(r#"{"event":"reaction.created","data":{"reaction":"😀"}}"#);
    assert!(e.reaction().unwrap().reaction.as_ref().unwrap().is_borrowed());
    // Escaped event names and keys are understood.
    let e = event(r#"{"\u0065vent":"message\u002ecreated","d\u0061ta":{"b\u006fdy":"x"}}"#);
    assert_eq!(e.kind(), EventKind::MessageCreated);
    assert_eq!(e.message().unwrap().body.as_deref(), Some("x"));
}

#[test]
fn webhook_event_shares_the_buffer_and_returns_exact_raw_data() {
    let data = r#"{ "message_id" : "m1", "body": "hi",  "ack": 3 }"#;
    let body = Bytes::from(format!(r#"{{"event":"message.created","data":{data},"org_id":"o"}}"#));
    let owned = WebhookEvent::decode(body.clone()).unwrap();
    assert_eq!(owned.body().as_ptr(), body.as_ptr());
    assert_eq!(owned.body(), &body);
    assert!(owned.event().is_typed());
    assert_eq!(owned.raw_data().unwrap().get(), data);
    // The event's strings point into the shared buffer.
    let message = owned.event().message().unwrap();
    let range = body.as_ptr_range();
    assert!(range.contains(&message.body.as_ref().unwrap().as_ptr()));
    // Clones share it too, and compare equal.
    let clone = owned.clone();
    assert_eq!(clone.body().as_ptr(), body.as_ptr());
    assert_eq!(clone, owned);
    assert_eq!(clone.kind(), EventKind::MessageCreated);
    assert_eq!(clone.name(), "message.created");
    // No `data`: no raw data.
    let owned = WebhookEvent::decode(Bytes::from_static(br#"{"event":"note.created"}"#)).unwrap();
    assert!(owned.raw_data().is_none_or(|raw| raw.get() == "null"));
}

#[test]
fn webhook_event_outlives_the_callers_handle_and_moves_across_threads() {
    let owned = {
        let body = Bytes::from(r#"{"event":"note.created","data":{"body":"later"}}"#.to_owned());
        WebhookEvent::decode(body).unwrap()
    };
    let joined = std::thread::spawn(move || owned.event().note().unwrap().body.as_deref().map(str::to_owned))
        .join()
        .unwrap();
    assert_eq!(joined.as_deref(), Some("later"));
}

#[test]
fn webhook_event_is_send_sync_clone_static() {
    fn assert_bounds<T: Send + Sync + Clone + 'static>() {}
    assert_bounds::<WebhookEvent>();
    assert_bounds::<DecodeError>();
    assert_bounds::<DataError>();
    assert_bounds::<Event<'static>>();
}
