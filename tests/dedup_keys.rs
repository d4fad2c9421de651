//! Property tests of `EventKeys`: distinct occurrences never share a key, and the copies of one
//! occurrence (a retry of the same bytes, the copy sent through another org phone, the same
//! members in another order) always share one.

use bytes::Bytes;
use periskope_webhook::dedup::{DedupKey, EventKeys, KeyFn};
use periskope_webhook::event::Family;
use periskope_webhook::{EventKind, WebhookEvent};
use proptest::prelude::*;
use serde_json::{Value, json};

/// What tells one occurrence from another, per the documented key table, with every field the
/// key reads present. Small domains, so that equal identities are frequent too.
#[derive(Clone, Debug)]
struct Occurrence {
    kind: EventKind,
    id: String,
    ack: i64,
    emoji: String,
    /// The occurrence's own time (`updated_at`, `flagged_at`, the reaction's `timestamp`), ms.
    at: i64,
    /// The envelope `timestamp`, ms.
    sent: i64,
    ticket: String,
}

impl Occurrence {
    /// The fields the documented table keys this kind by.
    fn identity(&self) -> (EventKind, Vec<String>) {
        let Occurrence { kind, id, ack, emoji, at, sent, ticket } = self.clone();
        let parts = match kind {
            EventKind::MessageCreated
            | EventKind::MessageDeleted
            | EventKind::ChatNotificationCreated
            | EventKind::NoteCreated
            | EventKind::TicketCreated
            | EventKind::TicketDeleted
            | EventKind::ChatCreated => vec![id],
            EventKind::MessageUpdated
            | EventKind::MessageFlagged
            | EventKind::MessageUnflagged
            | EventKind::OrgPhoneConnected
            | EventKind::OrgPhoneDisconnected
            | EventKind::OrgPhoneUpdated
            | EventKind::ChatCustomPropertiesUpdated => vec![id, at.to_string()],
            EventKind::OrgPhoneQr => vec![id, at.to_string(), ticket],
            EventKind::MessageAckUpdated => vec![id, ack.to_string()],
            EventKind::MessageTicketAttached => vec![id, ticket, at.to_string()],
            EventKind::ReactionCreated | EventKind::ReactionUpdated => vec![id, emoji, at.to_string()],
            EventKind::TicketUpdated => vec![id, sent.to_string()],
            other => unreachable!("{other} is not generated"),
        };
        (kind, parts)
    }

    /// The `data` object of this occurrence as delivered through `org_phone`.
    fn data(&self, org_phone: &str) -> Value {
        let Occurrence { kind, id, ack, emoji, at, ticket, .. } = self;
        match kind.family() {
            Some(Family::Message) => json!({
                "message_id": id, "org_phone": org_phone, "ack": ack.to_string(), "updated_at": at,
                "flag_metadata": {"flagged_at": at}, "message_ticket_id": ticket, "body": "hello",
            }),
            Some(Family::Reaction) => json!({
                "reaction_id": id, "reaction": emoji, "timestamp": at, "org_phone": org_phone,
            }),
            Some(Family::ChatNotification) => {
                json!({"notification_id": id, "org_phone": org_phone, "type": "add"})
            }
            Some(Family::Note) => json!({"message_id": id, "org_phone": org_phone, "body": "note"}),
            Some(Family::Ticket) => json!({
                "ticket": {"ticket_id": id, "subject": "s"}, "chat": {"org_phone": org_phone},
            }),
            Some(Family::Phone) => json!({
                "phone_id": id, "org_phone": org_phone, "updated_at": at, "qr_code": ticket,
            }),
            Some(Family::Chat) => json!({
                "chat_id": id, "org_phone": org_phone, "updated_at": at,
            }),
            _ => unreachable!("{kind} is not generated"),
        }
    }

    /// The body of this occurrence through `org_phone`, members in the order `order` picks.
    fn body(&self, org_phone: &str, order: &[usize]) -> String {
        let envelope = json!({
            "event": self.kind.as_str(), "data": self.data(org_phone), "org_id": "org-1",
            "org_phone": org_phone, "timestamp": self.sent,
        });
        shuffled(&envelope, order)
    }
}

/// `value` as JSON with each object's members rotated by the next number of `order`.
fn shuffled(value: &Value, order: &[usize]) -> String {
    match value {
        Value::Object(members) => {
            let mut members: Vec<_> = members.iter().collect();
            let turn = order.first().copied().unwrap_or(0);
            let len = members.len().max(1);
            members.rotate_left(turn % len);
            if turn % 2 == 1 {
                members.reverse();
            }
            let rest = order.get(1..).unwrap_or(&[]);
            let inner: Vec<String> = members
                .iter()
                .map(|(name, member)| format!("{}:{}", Value::from(name.as_str()), shuffled(member, rest)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        other => other.to_string(),
    }
}

fn key_of(body: &str, keys: EventKeys) -> DedupKey {
    keys.key(&WebhookEvent::decode(Bytes::from(body.to_owned())).expect("a delivery"))
}

fn occurrence() -> impl Strategy<Value = Occurrence> {
    let kinds: Vec<EventKind> = EventKind::ALL.to_vec();
    // Ids and emoji with the characters a naive key would join or split on.
    let text = prop_oneof![Just(""), Just("a"), Just("a|b"), Just("a|"), Just("|b"), Just("1:a"), Just("b")];
    let emoji = prop_oneof![Just("👍"), Just("❤️"), Just(""), Just("|"), Just("1:👍")];
    (prop::sample::select(kinds), text.clone(), 0i64..4, emoji, 0i64..3, 0i64..3, text).prop_map(
        |(kind, id, ack, emoji, at, sent, ticket)| Occurrence {
            kind,
            id: id.to_owned(),
            ack,
            emoji: emoji.to_owned(),
            at: 1_700_000_000_000 + at * 1000,
            sent: 1_700_000_000_000 + sent * 1000,
            ticket: ticket.to_owned(),
        },
    )
}

fn phone() -> impl Strategy<Value = String> {
    prop_oneof![Just("919999900001@c.us"), Just("919999900002@c.us"), Just("x|y@c.us")]
        .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn copies_of_one_occurrence_share_a_key(
        occurrence in occurrence(),
        (phone_a, phone_b) in (phone(), phone()),
        (order_a, order_b) in (prop::collection::vec(0usize..8, 3), prop::collection::vec(0usize..8, 3)),
    ) {
        let first = occurrence.body(&phone_a, &order_a);
        let copy = occurrence.body(&phone_b, &order_b);
        prop_assert_eq!(key_of(&first, EventKeys::default()), key_of(&first, EventKeys::default()));
        prop_assert_eq!(key_of(&first, EventKeys::default()), key_of(&copy, EventKeys::default()));
        // Per phone, the copies through one phone still share a key.
        let same_phone = occurrence.body(&phone_a, &order_b);
        prop_assert_eq!(key_of(&first, EventKeys::per_phone()), key_of(&same_phone, EventKeys::per_phone()));
    }

    #[test]
    fn distinct_occurrences_never_share_a_key(
        a in occurrence(),
        b in occurrence(),
        phone in phone(),
        order in prop::collection::vec(0usize..8, 3),
    ) {
        let same = a.identity() == b.identity();
        let (key_a, key_b) = (key_of(&a.body(&phone, &order), EventKeys::default()), key_of(&b.body(&phone, &order), EventKeys::default()));
        prop_assert_eq!(key_a == key_b, same, "{:?} / {:?}", a.identity(), b.identity());
    }

    #[test]
    fn the_digest_ignores_order_org_phone_and_the_envelope_timestamp_only(
        name in prop_oneof![Just("chat.label.updated"), Just("org.member.created"), Just("message.created")],
        fields in prop::collection::btree_map("[a-z]{1,3}", prop_oneof![Just(json!(1)), Just(json!("x|y")), Just(json!(null)), Just(json!([1, "a"]))], 0..5),
        other in prop::collection::btree_map("[a-z]{1,3}", Just(json!(2)), 1..3),
        (phone_a, phone_b) in (phone(), phone()),
        (sent_a, sent_b) in (envelope_time(), envelope_time()),
        (order_a, order_b) in (prop::collection::vec(0usize..8, 3), prop::collection::vec(0usize..8, 3)),
    ) {
        // `message.created` without a `message_id` (the fields are 1 to 3 letters) is digested too.
        let body = |data: &serde_json::Map<String, Value>, phone: &str, sent: &Option<Value>, order: &[usize]| {
            let mut data = data.clone();
            data.insert("org_phone".to_owned(), json!(phone));
            let mut envelope = json!({"event": name, "data": data, "org_phone": phone});
            if let Some(sent) = sent {
                envelope["timestamp"] = sent.clone();
            }
            shuffled(&envelope, order)
        };
        let data: serde_json::Map<String, Value> = fields.into_iter().collect();
        let first = key_of(&body(&data, &phone_a, &sent_a, &order_a), EventKeys::default());
        prop_assert!(first.as_str().starts_with("body|"));
        prop_assert_eq!(&first, &key_of(&body(&data, &phone_b, &sent_b, &order_b), EventKeys::default()));
        // Per phone, the copies through one phone sent at other times still share a key.
        prop_assert_eq!(
            key_of(&body(&data, &phone_a, &sent_a, &order_a), EventKeys::per_phone()),
            key_of(&body(&data, &phone_a, &sent_b, &order_b), EventKeys::per_phone())
        );
        let mut changed = data.clone();
        changed.extend(other.into_iter().map(|(name, value)| (format!("{name}_"), value)));
        prop_assert_ne!(first, key_of(&body(&changed, &phone_a, &sent_a, &order_a), EventKeys::default()));
    }
}

/// An envelope `timestamp` as Periskope may send it, or none.
fn envelope_time() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        (0i64..3).prop_map(|at| Some(json!(1_700_000_000_000 + at))),
        Just(Some(json!("2025-01-20T07:51:48.209Z"))),
        Just(Some(json!("2025-01-20 07:51:49+00"))),
    ]
}

#[test]
fn copies_sent_at_other_times_share_a_digest_key() {
    // An unknown event, and a message without an id: both keyed by a digest of the body.
    for data in [
        r#""event":"chat.label.updated","data":{"label":"vip"}"#,
        r#""event":"message.created","data":{"body":"hi"}"#,
    ] {
        let copy = |phone: &str, sent: &str| {
            format!(r#"{{{data},"org_id":"org-1","org_phone":"{phone}","timestamp":"{sent}"}}"#)
        };
        let first = key_of(&copy("919999900001@c.us", "2025-01-20T07:51:48.209Z"), EventKeys::default());
        let second = key_of(&copy("919999900002@c.us", "2025-01-20T07:51:49.731Z"), EventKeys::default());
        assert!(first.as_str().starts_with("body|"), "{data}");
        assert_eq!(first, second, "{data}");
    }
}

#[test]
fn times_in_keys_keep_their_full_precision() {
    // PostgreSQL writes microseconds: two edits 1 µs apart are two occurrences.
    let edit = |at: &str| {
        format!(r#"{{"event":"message.updated","data":{{"message_id":"m1","updated_at":"{at}"}}}}"#)
    };
    let reaction = |at: &str| {
        format!(
            r#"{{"event":"reaction.updated","data":{{"reaction_id":"r1","reaction":"👍","timestamp":"{at}"}}}}"#
        )
    };
    let ticket = |at: &str| {
        format!(r#"{{"event":"ticket.updated","data":{{"ticket":{{"ticket_id":"t1"}}}},"timestamp":"{at}"}}"#)
    };
    for body in [edit, reaction, ticket] {
        let first = key_of(&body("2025-01-17T08:44:02.123456+00:00"), EventKeys::default());
        let next = key_of(&body("2025-01-17T08:44:02.123457+00:00"), EventKeys::default());
        assert_ne!(first, next, "{}", body("…"));
        // The same instant, written otherwise, is still one key.
        let same = key_of(&body("2025-01-17 10:44:02.1234560+02"), EventKeys::default());
        assert_eq!(first, same, "{}", body("…"));
    }
}
