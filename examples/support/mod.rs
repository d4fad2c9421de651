//! What the server examples share: configuration from the environment, the layer, and the
//! one-line log of each delivery or rejection.

use std::time::Duration;

use periskope_webhook::redact::mask_phone_digits;
use periskope_webhook::{
    Dedup, DedupStore, DeliveryMetadata, Event, EventData, MemoryStore, PeriskopeWebhookLayer, Rejection,
    WebhookEvent,
};

/// The key from Periskope's public sample: anyone can sign with it, so it is for local tests only.
pub const DEMO_KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";

/// The route Periskope is told to POST to.
pub const PATH: &str = "/webhooks/periskope";

/// The address to listen on: `ADDR`, or `127.0.0.1:3000`.
pub fn addr() -> String {
    std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
}

/// The signing key: `PERISKOPE_SIGNING_KEY`, or the demo key with a warning.
pub fn signing_key() -> String {
    std::env::var("PERISKOPE_SIGNING_KEY").unwrap_or_else(|_| {
        eprintln!(
            "warning: PERISKOPE_SIGNING_KEY is not set; using the public demo key (local testing only)"
        );
        DEMO_KEY.to_owned()
    })
}

/// The middleware on `PERISKOPE_SIGNING_KEY`, with de-duplication (a delivery handled once in
/// the last day is answered without the handler: run the sender twice to see it) and schema
/// drift reporting. Rejected requests never reach the handler, so they are logged here (code and
/// status only: never the body, the signature or the key) and then answered as usual.
pub fn webhook_layer() -> PeriskopeWebhookLayer<Dedup<MemoryStore>> {
    webhook_layer_on(MemoryStore::new(100_000, Duration::from_secs(24 * 60 * 60)))
}

/// [`webhook_layer`], de-duplicating in `store` (e.g. a `RedisStore` shared by replicas).
pub fn webhook_layer_on<St: DedupStore>(store: St) -> PeriskopeWebhookLayer<Dedup<St>> {
    PeriskopeWebhookLayer::new(signing_key()).report_drift(true).deduplicate(Dedup::new(store)).on_rejection(
        |rejection: &Rejection| {
            println!("rejected {} {}", rejection.status().as_u16(), rejection.code());
            rejection.to_json_response()
        },
    )
}

/// Prints one line for a delivery: its name, its ids, and how its `data` decoded; then, if the
/// layer reported schema drift, what the typed model did not know.
pub fn log_delivery(delivery: &WebhookEvent, metadata: Option<&DeliveryMetadata>) {
    let event = delivery.event();
    let mut line = format!("delivery {}", event.name());
    for (label, value) in ids(event) {
        if let Some(value) = value {
            // Ids embed phone numbers: masked, as the command line prints them.
            line.push_str(&format!(" {label}={}", mask_phone_digits(value)));
        }
    }
    match &event.data {
        EventData::Unknown { .. } => line.push_str(" -> unknown event (raw data kept)"),
        EventData::Undecodable { error, .. } => {
            line.push_str(&format!(" -> undecodable at {} (raw data kept)", error.path()))
        }
        _ => line.push_str(" -> typed"),
    }
    println!("{line}");
    if let Some(drift) =
        metadata.and_then(|metadata| metadata.drift.as_ref()).filter(|drift| !drift.is_empty())
    {
        println!(
            "  drift: unknown fields {:?}, unknown values {:?}",
            drift.unknown_fields, drift.unknown_values
        );
    }
}

/// The ids worth logging for each kind of event, the organisation first.
fn ids<'e>(event: &'e Event<'_>) -> Vec<(&'static str, Option<&'e str>)> {
    let mut ids = match &event.data {
        EventData::ChatCreated(c) | EventData::ChatCustomPropertiesUpdated(c) => {
            vec![("org", c.org_id.as_deref()), ("chat", c.chat_id.as_deref())]
        }
        EventData::ChatNotificationCreated(n) => vec![
            ("org", n.org_id.as_deref()),
            ("chat", n.chat_id.as_deref()),
            ("notification", n.notification_id.as_deref()),
        ],
        EventData::ReactionCreated(r) | EventData::ReactionUpdated(r) => vec![
            ("org", r.org_id.as_deref()),
            ("chat", r.chat_id.as_deref()),
            ("message", r.message_id.as_deref()),
            ("reaction", r.reaction_id.as_deref()),
        ],
        EventData::NoteCreated(n) => vec![
            ("org", n.org_id.as_deref()),
            ("chat", n.chat_id.as_deref()),
            ("message", n.message_id.as_deref()),
        ],
        EventData::TicketCreated(t) | EventData::TicketUpdated(t) | EventData::TicketDeleted(t) => {
            let ticket = t.ticket.as_ref();
            let chat = t.chat.as_ref().and_then(|c| c.chat_id.as_deref());
            vec![
                ("org", ticket.and_then(|t| t.org_id.as_deref())),
                ("chat", chat.or_else(|| t.message.as_ref().and_then(|m| m.chat_id.as_deref()))),
                ("ticket", ticket.and_then(|t| t.ticket_id.as_deref())),
            ]
        }
        EventData::OrgPhoneConnected(p)
        | EventData::OrgPhoneDisconnected(p)
        | EventData::OrgPhoneUpdated(p)
        | EventData::OrgPhoneQr(p) => vec![("org", p.org_id.as_deref()), ("phone", p.phone_id.as_deref())],
        _ => match event.message() {
            Some(m) => vec![
                ("org", m.org_id.as_deref()),
                ("chat", m.chat_id.as_deref()),
                ("message", m.message_id.as_deref()),
                ("ticket", m.message_ticket_id.as_deref()),
            ],
            None => vec![("org", None)],
        },
    };
    // The envelope's org_id, when present, is the authority.
    if let Some(org) = event.org_id.as_deref() {
        ids[0].1 = Some(org);
    }
    ids
}
