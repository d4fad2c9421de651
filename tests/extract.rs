//! The axum extractors of `periskope_webhook::extract`, over real HTTP on 127.0.0.1: signed
//! fixtures reach the typed extractor of their family with their real field values; other
//! events, undecodable ones and a route without the layer get the documented rejections.

mod common;

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use common::{KEY, OTHER_KEY, Stack, client, fixture, send, serve, signed};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use periskope_webhook::extract::{
    ChatEvent, ChatNotificationEvent, ExtractRejection, MessageEvent, NoteEvent, PhoneEvent, ReactionEvent,
    TicketEvent,
};
use periskope_webhook::{DeliveryMetadata, EventKind, PeriskopeWebhookLayer, RawBody, WebhookEvent};
use serde_json::{Value, json};

fn text(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |text| Value::from(text.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// The handlers: each answers what its extractor gave it, as JSON.

async fn any(event: WebhookEvent) -> Json<Value> {
    Json(json!({
        "kind": event.kind().as_str(),
        "name": event.name(),
        "typed": event.event().is_typed(),
        "org_id": text(event.event().org_id.as_deref()),
    }))
}

async fn message(event: MessageEvent) -> Json<Value> {
    let message = event.message();
    Json(json!({
        "name": event.name(),
        "message_id": text(message.message_id.as_deref()),
        "body": text(message.body.as_deref()),
        "author": text(message.author.as_deref()),
    }))
}

async fn reaction(event: ReactionEvent) -> Json<Value> {
    let reaction = event.reaction();
    Json(json!({
        "name": event.name(),
        "reaction": text(reaction.reaction.as_deref()),
        "message_id": text(reaction.message_id.as_deref()),
    }))
}

async fn chat(event: ChatEvent) -> Json<Value> {
    let chat = event.chat();
    Json(json!({
        "name": event.name(),
        "chat_id": text(chat.chat_id.as_deref()),
        "members": chat.members.as_ref().map(|members| members.len()),
    }))
}

async fn notification(event: ChatNotificationEvent) -> Json<Value> {
    let notification = event.chat_notification();
    Json(json!({
        "name": event.name(),
        "chat_id": text(notification.chat_id.as_deref()),
        "author": text(notification.author.as_deref()),
    }))
}

async fn note(event: NoteEvent) -> Json<Value> {
    let note = event.note();
    Json(json!({
        "name": event.name(),
        "body": text(note.body.as_deref()),
        "private": note.is_private_note,
    }))
}

async fn ticket(event: TicketEvent) -> Json<Value> {
    let ticket = event.ticket().ticket.as_ref();
    Json(json!({
        "name": event.name(),
        "ticket_id": text(ticket.and_then(|ticket| ticket.ticket_id.as_deref())),
        "subject": text(ticket.and_then(|ticket| ticket.subject.as_deref())),
    }))
}

async fn phone(event: PhoneEvent) -> Json<Value> {
    let phone = event.phone();
    Json(json!({
        "name": event.name(),
        "phone_id": text(phone.phone_id.as_deref()),
        "org_phone": text(phone.org_phone.as_deref()),
    }))
}

async fn metadata(metadata: DeliveryMetadata, RawBody(raw): RawBody, event: WebhookEvent) -> Json<Value> {
    Json(json!({
        "key_index": metadata.key.as_ref().map(|key| key.index()),
        "body_len": metadata.body_len,
        "raw_len": raw.len(),
        "shares_buffer": raw.as_ptr() == event.body().as_ptr(),
    }))
}

async fn ticket_or_rejection(result: Result<TicketEvent, ExtractRejection>) -> Json<Value> {
    Json(match result {
        Ok(event) => json!({ "ok": event.name() }),
        Err(rejection) => json!({ "rejection": rejection.code(), "status": rejection.status().as_u16() }),
    })
}

/// axum's own body extractors, which apply axum's 2 MB default limit unless the layer lifts it.
async fn bytes_len(body: Bytes) -> Json<Value> {
    Json(json!({ "len": body.len() }))
}

async fn string_len(body: String) -> Json<Value> {
    Json(json!({ "len": body.len() }))
}

async fn json_text_len(Json(delivery): Json<Value>) -> Json<Value> {
    Json(json!({ "len": delivery["data"]["body"].as_str().map(str::len) }))
}

/// Every extractor behind the layer, and two routes without it.
fn app() -> Router {
    let layer = PeriskopeWebhookLayer::new(KEY);
    Router::new()
        .route("/any", post(any))
        .route("/message", post(message))
        .route("/reaction", post(reaction))
        .route("/chat", post(chat))
        .route("/chat-notification", post(notification))
        .route("/note", post(note))
        .route("/ticket", post(ticket))
        .route("/phone", post(phone))
        .route("/metadata", post(metadata))
        .route("/ticket-or-rejection", post(ticket_or_rejection))
        .route("/bytes", post(bytes_len))
        .route("/string", post(string_len))
        .route("/json", post(json_text_len))
        .layer(layer)
        // Added after `.layer`, so the layer does not wrap them: a misconfigured server.
        .route("/bare/ticket", post(ticket))
        .route("/bare/any", post(any))
        .route("/bare/metadata", post(metadata))
}

// ---------------------------------------------------------------------------------------------
// Client

/// A reply as the cases read it: status, content type and JSON body.
struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    json: Value,
}

impl Reply {
    #[track_caller]
    fn assert_code(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.json["code"].as_str()), (status, Some(code)), "{}", self.json);
    }
}

async fn post_signed(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Reply {
    let reply = send(&client(), signed(&format!("http://{addr}{path}"), KEY, body)).await;
    let content_type = reply.headers.get(CONTENT_TYPE).map(|value| value.to_str().expect("ASCII").to_owned());
    Reply { status: reply.status, content_type, json: reply.json() }
}

// ---------------------------------------------------------------------------------------------
// Cases

#[tokio::test]
async fn each_family_reaches_its_typed_extractor_with_real_values() {
    let server = serve(Stack::Axum, app()).await;
    let cases: [(&str, &str, Value); 11] = [
        (
            "/message",
            "message.created",
            json!({
                "message_id": "true_12036329726967XXXX@g.us_3EB01F4653XX9XX05E9859_9190043XXXXX@c.us",
                "body": "Hello, world",
                "author": "9190043XXXXX@c.us",
            }),
        ),
        ("/message", "message.ack.updated", json!({})),
        ("/message", "message.ticket.attached", json!({})),
        ("/reaction", "reaction.created", json!({ "reaction": "😀" })),
        ("/reaction", "reaction.updated", json!({})),
        ("/chat", "chat.created", json!({ "chat_id": "919537851844@c.us", "members": 2 })),
        ("/chat", "chat.custom_properties.updated", json!({})),
        (
            "/chat-notification",
            "chat.notification.created",
            json!({ "chat_id": "120363371308389685@g.us", "author": "918527184400@c.us" }),
        ),
        ("/note", "note.created", json!({ "body": "Hello World", "private": true })),
        ("/ticket", "ticket.updated", json!({})),
        ("/phone", "org.phone.connected", json!({ "phone_id": "phone-bqzvyibhmwkaergr" })),
    ];
    for (path, name, expected) in cases {
        let reply = post_signed(server.addr, path, fixture(&format!("{name}.envelope.json"))).await;
        assert_eq!(reply.status, StatusCode::OK, "{name} to {path}: {}", reply.json);
        assert_eq!(reply.json["name"], name, "{name} to {path}");
        for (field, value) in expected.as_object().expect("an object") {
            assert_eq!(&reply.json[field], value, "{name} to {path}: {field}");
        }
    }
}

#[tokio::test]
async fn ticket_fixtures_carry_their_ticket() {
    let server = serve(Stack::Axum, app()).await;
    for name in ["ticket.created", "ticket.updated", "ticket.deleted"] {
        let body = fixture(&format!("{name}.envelope.json"));
        let sent: Value = serde_json::from_slice(&body).expect("JSON fixture");
        let reply = post_signed(server.addr, "/ticket", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.json);
        assert_eq!(reply.json["name"], name);
        assert_eq!(reply.json["ticket_id"], sent["data"]["ticket"]["ticket_id"], "{name}");
        assert!(reply.json["ticket_id"].is_string(), "{name} has a ticket id: {}", reply.json);
        assert_eq!(reply.json["subject"], sent["data"]["ticket"]["subject"], "{name}");
    }
}

#[tokio::test]
async fn axum_body_extractors_read_a_delivery_over_axums_default_limit() {
    let server = serve(Stack::Axum, app()).await;
    // 3 MB: over axum's 2 MB default, under the layer's 25 MiB.
    let text = "x".repeat(3 * 1024 * 1024);
    let body = format!(r#"{{"event":"message.created","data":{{"message_id":"m-big","body":"{text}"}}}}"#);
    assert!(body.len() > 3_000_000);
    for (path, expected) in [("/bytes", body.len()), ("/string", body.len()), ("/json", text.len())] {
        let reply = post_signed(server.addr, path, body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.json);
        assert_eq!(reply.json["len"], json!(expected), "{path}");
    }
}

#[tokio::test]
async fn the_whole_event_extractor_takes_every_event() {
    let server = serve(Stack::Axum, app()).await;
    let reply = post_signed(server.addr, "/any", fixture("org.phone.qr.envelope.json")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["kind"], "org.phone.qr");
    assert_eq!(reply.json["typed"], true);

    let unknown = r#"{"event":"chat.label.updated","data":{"label":"vip"},"org_id":"org-1"}"#;
    let reply = post_signed(server.addr, "/any", unknown).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json,
        json!({ "kind": "unknown", "name": "chat.label.updated", "typed": false, "org_id": "org-1" })
    );

    let undecodable = r#"{"event":"ticket.updated","data":[1,2,3]}"#;
    let reply = post_signed(server.addr, "/any", undecodable).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["kind"], "ticket.updated");
    assert_eq!(reply.json["typed"], false);
}

#[tokio::test]
async fn metadata_and_raw_body_are_extractors() {
    let server = serve(Stack::Axum, app()).await;
    let body = fixture("note.created.envelope.json");
    let reply = post_signed(server.addr, "/metadata", body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(
        reply.json,
        json!({ "key_index": 0, "body_len": body.len(), "raw_len": body.len(), "shares_buffer": true })
    );
}

#[tokio::test]
async fn an_event_of_another_family_is_unprocessable() {
    let server = serve(Stack::Axum, app()).await;
    let body = fixture("message.created.envelope.json");
    let reply = post_signed(server.addr, "/ticket", body).await;
    reply.assert_code(StatusCode::UNPROCESSABLE_ENTITY, "unexpected_event_kind");
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    let message = reply.json["message"].as_str().expect("a message");
    assert!(message.contains("ticket.*") && message.contains("message.created"), "{message}");
    // Names only: nothing from the message's data.
    assert!(!message.contains("Hello"), "{message}");

    // `chat.notification.created` is not of the chat family, nor a chat of the notification one.
    let reply = post_signed(server.addr, "/chat", fixture("chat.notification.created.envelope.json")).await;
    reply.assert_code(StatusCode::UNPROCESSABLE_ENTITY, "unexpected_event_kind");
    let reply = post_signed(server.addr, "/chat-notification", fixture("chat.created.envelope.json")).await;
    reply.assert_code(StatusCode::UNPROCESSABLE_ENTITY, "unexpected_event_kind");
}

#[tokio::test]
async fn unknown_and_undecodable_events_are_of_no_family() {
    let server = serve(Stack::Axum, app()).await;
    let unknown = r#"{"event":"ticket.label.updated","data":{"ticket":{"ticket_id":"T-1"}}}"#;
    let reply = post_signed(server.addr, "/ticket", unknown).await;
    reply.assert_code(StatusCode::UNPROCESSABLE_ENTITY, "unexpected_event_kind");
    let message = reply.json["message"].as_str().expect("a message");
    assert!(!message.contains("ticket.label.updated"), "the unknown name is body content: {message}");

    let undecodable = r#"{"event":"ticket.updated","data":{"ticket":{"priority":"very high"}}}"#;
    let reply = post_signed(server.addr, "/ticket", undecodable).await;
    reply.assert_code(StatusCode::UNPROCESSABLE_ENTITY, "undecodable_data");
    let message = reply.json["message"].as_str().expect("a message");
    assert!(message.contains("ticket.updated") && !message.contains("very high"), "{message}");

    // Undecodable data of another family is simply another family.
    let reply = post_signed(server.addr, "/message", undecodable).await;
    reply.assert_code(StatusCode::UNPROCESSABLE_ENTITY, "unexpected_event_kind");

    // A handler may take the rejection itself.
    let reply = post_signed(server.addr, "/ticket-or-rejection", undecodable).await;
    assert_eq!(reply.json, json!({ "rejection": "undecodable_data", "status": 422 }));
    let reply =
        post_signed(server.addr, "/ticket-or-rejection", fixture("ticket.deleted.envelope.json")).await;
    assert_eq!(reply.json, json!({ "ok": "ticket.deleted" }));
}

#[tokio::test]
async fn without_the_layer_the_server_is_misconfigured() {
    let server = serve(Stack::Axum, app()).await;
    for path in ["/bare/ticket", "/bare/any", "/bare/metadata"] {
        let reply = post_signed(server.addr, path, fixture("ticket.created.envelope.json")).await;
        reply.assert_code(StatusCode::INTERNAL_SERVER_ERROR, "periskope_layer_missing");
        let message = reply.json["message"].as_str().expect("a message");
        assert!(
            message.contains("misconfiguration") && message.contains("PeriskopeWebhookLayer"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_forged_request_never_reaches_an_extractor() {
    let server = serve(Stack::Axum, app()).await;
    let forged =
        signed(&format!("http://{}/ticket", server.addr), OTHER_KEY, fixture("ticket.created.envelope.json"));
    send(&client(), forged).await.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
}

#[test]
fn typed_extractors_convert_from_and_into_the_event() {
    let event = WebhookEvent::decode(fixture("reaction.updated.envelope.json")).expect("decodes");
    let typed = ReactionEvent::try_from(event.clone()).expect("a reaction");
    assert_eq!(typed.kind(), EventKind::ReactionUpdated);
    assert_eq!(typed.reaction(), event.event().reaction().expect("a reaction"));
    assert_eq!(WebhookEvent::from(typed), event);

    let rejection = NoteEvent::try_from(event).expect_err("not a note");
    assert_eq!(
        rejection,
        ExtractRejection::UnexpectedKind { expected: "note.created", actual: EventKind::ReactionUpdated }
    );
    assert_eq!(rejection.to_string(), "this route takes note.created events, not reaction.updated");
}
