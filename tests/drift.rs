//! Schema-drift reporting over a real axum stack: on, it reports the unknown fields and enum
//! values of fixtures with extra fields; off, it reports nothing and changes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use periskope_webhook::drift::Drift;
use periskope_webhook::{DeliveryMetadata, PeriskopeWebhookLayer, WebhookEvent, testing};

const KEY: &str = "peri_drift-test-key";

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}")))
}

/// Serves the layer on 127.0.0.1 and returns what the handler saw of each delivery.
async fn deliver(layer: PeriskopeWebhookLayer, bodies: &[Bytes]) -> Vec<(bool, Option<Drift>)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |Extension(event): Extension<WebhookEvent>, Extension(meta): Extension<DeliveryMetadata>| async move {
            seen.lock().unwrap().push((event.event().is_typed(), meta.drift));
            "ok"
        }
    };
    let app = Router::new().route("/webhooks/periskope", post(handler)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/periskope", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    for body in bodies {
        let request: Request<Bytes> = testing::signed_request_for_body(KEY, &url, body.clone());
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request.map(Full::new)))
            .await
            .expect("answered in time")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    server.abort();
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn drift_mode_reports_unknown_fields_and_values() {
    let bodies = [
        fixture("drift/message.created.extra-fields.json"),
        fixture("drift/ticket.created.extra-fields.json"),
        fixture("deliveries/message.created.envelope.json"),
    ];
    let seen = deliver(PeriskopeWebhookLayer::new(KEY).report_drift(true), &bodies).await;
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(typed, _)| *typed), "drift never costs the typed event");

    let message = seen[0].1.clone().expect("drift reported");
    assert_eq!(
        message.unknown_fields,
        ["delivery_id", "data.media.blurhash", "data.delivery_info.played", "data.is_view_once"]
    );
    assert_eq!(message.unknown_values, [("data.message_type".to_owned(), "sticker_pack".to_owned())]);

    let ticket = seen[1].1.clone().expect("drift reported");
    assert_eq!(
        ticket.unknown_fields,
        [
            "data.chat.members.*.verified_name",
            "data.chat.members.*.verified_name",
            "data.ticket.sla_breached"
        ]
    );
    assert_eq!(ticket.unknown_values, [("data.ticket.status".to_owned(), "snoozed".to_owned())]);
    assert!(
        ticket.unknown_fields.iter().all(|path| !path.contains("@c.us")),
        "map keys such as WhatsApp ids never appear in paths"
    );

    assert_eq!(seen[2].1, Some(Drift::default()), "a fixture in the model has no drift");
}

#[tokio::test]
async fn drift_mode_off_reports_nothing() {
    let seen =
        deliver(PeriskopeWebhookLayer::new(KEY), &[fixture("drift/message.created.extra-fields.json")]).await;
    assert_eq!(seen, [(true, None)]);
}

#[test]
fn data_before_the_event_name_reports_the_same_paths() {
    let body = br#"{"data":{"body":"hi","extra":1},"event":"message.created","more":2}"#;
    let drift = Drift::detect(&WebhookEvent::decode(Bytes::from_static(body)).unwrap());
    assert_eq!(drift.unknown_fields, ["more", "data.extra"]);
}

#[test]
fn unknown_events_report_only_envelope_fields() {
    let body = br#"{"event":"chat.label.updated","data":{"anything":1},"extra":true}"#;
    let drift = Drift::detect(&WebhookEvent::decode(Bytes::from_static(body)).unwrap());
    assert_eq!(drift.unknown_fields, ["extra"]);
    assert!(drift.unknown_values.is_empty());
}
