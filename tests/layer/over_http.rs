//! The cases run over HTTP against each stack.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::header::ALLOW;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::signature::SIGNATURE_HEADER;
use periskope_webhook::{EventKind, KindSet, PeriskopeWebhookLayer, Rejection, SigningKey, SigningKeys};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::for_each_stack;
use crate::support::*;

fn layer() -> PeriskopeWebhookLayer {
    PeriskopeWebhookLayer::new(KEY)
}

/// The JSON `event` (or `event_type`) name of a delivery file, read independently of the crate.
fn event_name(body: &[u8]) -> String {
    let json: Value = serde_json::from_slice(body).expect("fixture is JSON");
    json.get("event").or_else(|| json.get("event_type")).and_then(Value::as_str).expect("a name").to_owned()
}

/// Asserts the handler saw exactly `body`, as a typed event of `kind`, verified by key `(index, id)`.
#[track_caller]
fn assert_delivered(seen: &Observed, kind: EventKind, body: &Bytes, key: Option<(usize, &str)>) {
    assert_eq!(seen.kind, Some(kind));
    assert!(seen.is_typed, "{kind}: {:?}", seen.data_error_path);
    assert_eq!(seen.body, *body, "{kind}: replayed body");
    assert_eq!(seen.raw_body.as_ref(), Some(body), "{kind}: RawBody");
    assert_eq!(seen.event_body.as_ref(), Some(body), "{kind}: WebhookEvent::body");
    assert!(seen.raw_shares_event_body, "{kind}: RawBody and WebhookEvent::body share the buffer");
    let key = key.map(|(index, id)| (index, id.to_owned()));
    assert_eq!(seen.metadata, Some((key, body.len())), "{kind}: metadata");
}

for_each_stack!(
    every_envelope_fixture_is_delivered,
    signature_test_vector_is_accepted,
    python_signature_is_accepted_and_a_changed_byte_is_not,
    only_post_is_allowed,
    signature_header_errors,
    uppercase_hex_and_identical_duplicates_are_accepted,
    key_rotation_accepts_both_keys_and_reports_which,
    declared_length_over_the_limit_is_refused_before_reading,
    streamed_body_over_the_limit_is_refused,
    body_of_exactly_the_limit_is_accepted,
    body_failing_midway_never_reaches_the_handler,
    connection_closed_midway_never_reaches_the_handler,
    verified_bodies_that_are_not_deliveries_are_refused,
    unverified_bytes_are_never_parsed,
    unknown_events_are_forwarded,
    undecodable_data_is_forwarded_or_refused_in_strict_mode,
    filtered_events_are_answered_without_the_handler,
    custom_rejection_responder_writes_the_response,
    insecure_mode_forwards_unsigned_requests,
    concurrent_deliveries_are_each_handled_once,
);

async fn every_envelope_fixture_is_delivered(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let names = delivery_fixture_names();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let body = fixture(&name);
        let kind = EventKind::from_name(&event_name(&body));
        assert!(kind.is_known(), "{name}");
        let reply = send(&client, signed(&server.url, KEY, body.clone())).await;
        reply.assert(StatusCode::OK, "handled");
        assert_eq!(reply.headers["x-handler"], "yes", "{name}: the inner response passes through");
        let seen = recorder.one();
        assert_eq!(seen.name.as_deref(), Some(kind.as_str()), "{name}");
        assert_delivered(&seen, kind, &body, Some((0, "key-0")));
    }
    server.stop().await;
}

async fn signature_test_vector_is_accepted(stack: Stack) {
    let (key, body, expected) = test_vector();
    assert_eq!(body.len(), 947);
    let recorder = Recorder::default();
    let server = start(stack, PeriskopeWebhookLayer::new(&key), recorder.clone()).await;
    let client = client();

    let reply = send(&client, post_with(&server.url, body.clone(), &[expected.as_bytes()])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::ReactionCreated, &body, Some((0, "key-0")));

    // The same signature over a body differing in its last byte.
    let mut changed = body.to_vec();
    *changed.last_mut().unwrap() = b' ';
    let reply = send(&client, post_with(&server.url, changed, &[expected.as_bytes()])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
    recorder.assert_not_called("changed body");
    server.stop().await;
}

async fn python_signature_is_accepted_and_a_changed_byte_is_not(stack: Stack) {
    let body = fixture("message.created.envelope.json");
    let signature = python_hmac(KEY, &body);
    let mut changed = body.to_vec();
    // Change one byte inside a string value, so that the body stays a valid delivery.
    let at =
        changed.windows(5).position(|w| w == b"Hello").or_else(|| changed.iter().rposition(|b| *b == b'"'));
    let at = at.expect("a byte to change");
    changed[at] ^= 0x20;
    let changed = Bytes::from(changed);
    assert_ne!(python_hmac(KEY, &changed), signature);

    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();

    let reply = send(&client, post_with(&server.url, body.clone(), &[signature.as_bytes()])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::MessageCreated, &body, Some((0, "key-0")));

    let reply = send(&client, post_with(&server.url, changed.clone(), &[signature.as_bytes()])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
    recorder.assert_not_called("one byte changed");

    // And the changed body with its own (python) signature is fine again.
    let reply =
        send(&client, post_with(&server.url, changed.clone(), &[python_hmac(KEY, &changed).as_bytes()]))
            .await;
    reply.assert(StatusCode::OK, "handled");
    assert_eq!(recorder.one().body, changed);
    server.stop().await;
}

async fn only_post_is_allowed(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let body = fixture("message.created.envelope.json");
    let signature = periskope_webhook::testing::signature(KEY, &body);
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let has_body = method != Method::GET;
        let request = Request::builder()
            .method(method.clone())
            .uri(&server.url)
            .header(SIGNATURE_HEADER, &signature)
            .body(full(if has_body { body.clone() } else { Bytes::new() }))
            .unwrap();
        let reply = send(&client, request).await;
        reply.assert(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(reply.headers.get(ALLOW).map(|v| v.to_str().unwrap()), Some("POST"), "{method}");
    }
    recorder.assert_not_called("non-POST");
    server.stop().await;
}

async fn signature_header_errors(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let body = fixture("ticket.created.envelope.json");
    let good = periskope_webhook::testing::signature(KEY, &body);
    let wrong_key = periskope_webhook::testing::signature(OTHER_KEY, &body);

    let reply = send(&client, post_with(&server.url, body.clone(), &[])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_missing");

    let prefixed = format!("sha256={good}");
    let non_hex = format!("{}z", &good[..63]);
    let too_long = format!("{good}0");
    for malformed in [&good[..63], &prefixed, &non_hex, &too_long, "", "v1=abc"] {
        let reply = send(&client, post_with(&server.url, body.clone(), &[malformed.as_bytes()])).await;
        reply.assert(StatusCode::UNAUTHORIZED, "signature_malformed");
    }

    let reply = send(&client, post_with(&server.url, body.clone(), &[wrong_key.as_bytes()])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");

    // A malformed copy next to a good one.
    let reply =
        send(&client, post_with(&server.url, body.clone(), &[good.as_bytes(), prefixed.as_bytes()])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_malformed");

    // Two copies that disagree are refused, even when one of them is right, in either order.
    for pair in [[good.as_bytes(), wrong_key.as_bytes()], [wrong_key.as_bytes(), good.as_bytes()]] {
        let reply = send(&client, post_with(&server.url, body.clone(), &pair)).await;
        reply.assert(StatusCode::UNAUTHORIZED, "signature_conflict");
    }
    recorder.assert_not_called("bad signatures");
    server.stop().await;
}

async fn uppercase_hex_and_identical_duplicates_are_accepted(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let body = fixture("note.created.envelope.json");
    let good = periskope_webhook::testing::signature(KEY, &body);
    let upper = good.to_ascii_uppercase();

    let reply = send(&client, post_with(&server.url, body.clone(), &[upper.as_bytes()])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::NoteCreated, &body, Some((0, "key-0")));

    let reply =
        send(&client, post_with(&server.url, body.clone(), &[good.as_bytes(), good.as_bytes()])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::NoteCreated, &body, Some((0, "key-0")));

    // Duplicates that differ only in letter case decode to the same signature.
    let reply =
        send(&client, post_with(&server.url, body.clone(), &[good.as_bytes(), upper.as_bytes()])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::NoteCreated, &body, Some((0, "key-0")));
    server.stop().await;
}

async fn key_rotation_accepts_both_keys_and_reports_which(stack: Stack) {
    let keys = SigningKeys::new(SigningKey::new(KEY).unwrap().with_id("current"))
        .and_then(|keys| keys.with_key(OTHER_KEY))
        .unwrap();
    let recorder = Recorder::default();
    let server = start(stack, PeriskopeWebhookLayer::with_keys(keys), recorder.clone()).await;
    let client = client();
    let body = fixture("chat.created.envelope.json");

    let reply = send(&client, signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::ChatCreated, &body, Some((0, "current")));

    let reply = send(&client, signed(&server.url, OTHER_KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::ChatCreated, &body, Some((1, "key-1")));

    let reply = send(&client, signed(&server.url, "peri_not-in-the-set", body.clone())).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
    recorder.assert_not_called("a third key");
    server.stop().await;
}

const LIMIT: usize = 1024;

async fn declared_length_over_the_limit_is_refused_before_reading(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer().body_limit(LIMIT), recorder.clone()).await;
    let client = client();

    // Content-Length: 10 MB and a body that never sends a byte: the 413 must still come back.
    let (sender, body) = channel_body(Some(10 * 1024 * 1024));
    let reply = send(&client, streamed(&server.url, body, &"0".repeat(64))).await;
    reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Not a byte of the body was sent; the sender is still open.
    drop(sender);

    // One byte over, correctly signed, sent in full.
    let body = message_of_len(LIMIT + 1);
    let reply = send(&client, signed(&server.url, KEY, body)).await;
    reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // The same over a raw connection: headers only, then read the answer while the body is owed.
    let mut stream = within("connect", TcpStream::connect(server.addr)).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         {SIGNATURE_HEADER}: {}\r\ncontent-length: 10485760\r\n\r\n",
        server.addr,
        "0".repeat(64)
    );
    within("write head", stream.write_all(head.as_bytes())).await.unwrap();
    let answer = read_head(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    recorder.assert_not_called("over the limit");
    server.stop().await;
}

/// Reads from `stream` until the peer closes or a JSON body has arrived (bounded).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(STEP, stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    break;
                }
            }
            Err(_) => panic!("timed out reading the answer; got {:?}", String::from_utf8_lossy(&seen)),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn streamed_body_over_the_limit_is_refused(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer().body_limit(LIMIT), recorder.clone()).await;
    let client = client();

    // Chunked (no Content-Length); the limit is crossed by the third chunk, and the body never
    // ends: the 413 must not wait for the end.
    let body = message_of_len(4 * 512);
    let signature = periskope_webhook::testing::signature(KEY, &body);
    let (sender, stream) = channel_body(None);
    let feed = tokio::spawn(async move {
        for chunk in body.chunks(512).take(3) {
            if sender.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                return;
            }
        }
        // Keep the body open until the client gives up on it.
        sender.closed().await;
    });
    let reply = send(&client, streamed(&server.url, stream, &signature)).await;
    reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    feed.abort();

    // A chunked body over the limit that does end.
    let body = message_of_len(LIMIT + 1);
    let signature = periskope_webhook::testing::signature(KEY, &body);
    let (sender, stream) = channel_body(None);
    let feed = tokio::spawn(async move {
        for chunk in body.chunks(300) {
            if sender.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                return;
            }
        }
    });
    let reply = send(&client, streamed(&server.url, stream, &signature)).await;
    reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    feed.abort();
    recorder.assert_not_called("over the limit");
    server.stop().await;
}

async fn body_of_exactly_the_limit_is_accepted(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer().body_limit(LIMIT), recorder.clone()).await;
    let client = client();
    let body = message_of_len(LIMIT);

    // With a Content-Length.
    let reply = send(&client, signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::MessageCreated, &body, Some((0, "key-0")));

    // Chunked, in uneven pieces.
    let signature = periskope_webhook::testing::signature(KEY, &body);
    let (sender, stream) = channel_body(None);
    let chunks = [body.slice(..1), body.slice(1..500), body.slice(500..1000), body.slice(1000..)];
    let feed = tokio::spawn(async move {
        for chunk in chunks {
            sender.send(Ok(chunk)).await.expect("the server reads the whole body");
        }
    });
    let reply = send(&client, streamed(&server.url, stream, &signature)).await;
    reply.assert(StatusCode::OK, "handled");
    within("feed", feed).await.unwrap();
    assert_delivered(&recorder.one(), EventKind::MessageCreated, &body, Some((0, "key-0")));
    server.stop().await;
}

async fn body_failing_midway_never_reaches_the_handler(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let body = fixture("message.created.envelope.json");
    let signature = periskope_webhook::testing::signature(KEY, &body);

    for exact in [None, Some(body.len() as u64)] {
        let (sender, stream) = channel_body(exact);
        let chunks = [body.slice(..100), body.slice(100..200)];
        let feed = tokio::spawn(async move {
            for chunk in chunks {
                let _ = sender.send(Ok(chunk)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = sender.send(Err("the client's body failed".into())).await;
        });
        // The client aborts the request; whatever it reports, the handler must not run.
        let outcome = try_send(&client(), streamed(&server.url, stream, &signature)).await;
        if let Ok(reply) = &outcome {
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
        }
        within("feed", feed).await.unwrap();
    }

    // The server keeps serving.
    let reply = send(&client(), signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::MessageCreated, &body, Some((0, "key-0")));
    server.stop().await;
}

async fn connection_closed_midway_never_reaches_the_handler(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let body = fixture("message.created.envelope.json");
    let signature = periskope_webhook::testing::signature(KEY, &body);

    // Content-Length promises the whole body, 100 bytes come, then the client half-closes.
    let mut stream = within("connect", TcpStream::connect(server.addr)).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         {SIGNATURE_HEADER}: {signature}\r\ncontent-length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    within("write", stream.write_all(head.as_bytes())).await.unwrap();
    within("write", stream.write_all(&body[..100])).await.unwrap();
    within("shutdown", stream.shutdown()).await.unwrap();
    let answer = read_head(&mut stream).await;
    // The read half is still open, so the 400 can be read.
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":"body_read_failed""#), "{answer}");
    drop(stream);

    // Same with a chunked body cut in the middle of a chunk, and the socket dropped.
    let mut stream = within("connect", TcpStream::connect(server.addr)).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {}\r\n{SIGNATURE_HEADER}: {signature}\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n",
        server.addr,
        body.len()
    );
    within("write", stream.write_all(head.as_bytes())).await.unwrap();
    within("write", stream.write_all(&body[..50])).await.unwrap();
    drop(stream);

    let reply = send(&client(), signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::MessageCreated, &body, Some((0, "key-0")));
    server.stop().await;
}

async fn verified_bodies_that_are_not_deliveries_are_refused(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let cases: [(&[u8], &str); 8] = [
        (br#"{"event":"message.created","data":{"#, "malformed_json"),
        (b"not json at all", "malformed_json"),
        (br#"{"event":"message.created"} trailing"#, "malformed_json"),
        (br#"["event","message.created"]"#, "not_an_object"),
        (b"42", "not_an_object"),
        (br#"{"data":{"body":"hi"},"org_id":"o"}"#, "missing_event_name"),
        (b"{\"event\":\"message.created\",\"data\":{\"body\":\"\xff\xfe\"}}", "invalid_utf8"),
        (b"\xc3\x28", "invalid_utf8"),
    ];
    for (body, code) in cases {
        let reply = send(&client, signed(&server.url, KEY, Bytes::from_static(body))).await;
        reply.assert(StatusCode::BAD_REQUEST, code);
    }
    recorder.assert_not_called("not deliveries");
    server.stop().await;
}

async fn unverified_bytes_are_never_parsed(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    for body in [&br#"{"event":"message.created","data":{"#[..], b"[1,2]", b"\xff\xfe", br#"{"data":{}}"#] {
        let wrong = periskope_webhook::testing::signature(OTHER_KEY, body);
        let reply =
            send(&client, post_with(&server.url, Bytes::from_static(body), &[wrong.as_bytes()])).await;
        reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
        let reply = send(&client, post_with(&server.url, Bytes::from_static(body), &[])).await;
        reply.assert(StatusCode::UNAUTHORIZED, "signature_missing");
    }
    recorder.assert_not_called("unverified");
    server.stop().await;
}

async fn unknown_events_are_forwarded(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let body = Bytes::from_static(br#"{"event":"chat.label.updated","data":{"label":"vip"},"org_id":"o-1"}"#);
    let reply = send(&client, signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    let seen = recorder.one();
    assert_eq!(seen.kind, Some(EventKind::Unknown));
    assert_eq!(seen.name.as_deref(), Some("chat.label.updated"));
    assert!(!seen.is_typed);
    assert_eq!(seen.body, body);
    assert!(seen.raw_shares_event_body);
    assert_eq!(seen.metadata, Some((Some((0, "key-0".to_owned())), body.len())));
    server.stop().await;
}

fn misfit_ticket() -> Bytes {
    Bytes::from_static(
        br#"{"event":"ticket.created","data":{"ticket":{"ticket_id":"TICKET-1","priority":"high"}},"org_id":"o-1"}"#,
    )
}

async fn undecodable_data_is_forwarded_or_refused_in_strict_mode(stack: Stack) {
    let body = misfit_ticket();

    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let reply = send(&client(), signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::OK, "handled");
    let seen = recorder.one();
    assert_eq!(seen.kind, Some(EventKind::TicketCreated));
    assert!(!seen.is_typed);
    assert_eq!(seen.data_error_path.as_deref(), Some("data.ticket.priority"));
    assert_eq!(seen.body, body);
    server.stop().await;

    let server = start(stack, layer().strict(true), recorder.clone()).await;
    let client = client();
    let reply = send(&client, signed(&server.url, KEY, body.clone())).await;
    reply.assert(StatusCode::UNPROCESSABLE_ENTITY, "undecodable_data");
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("data.ticket.priority"), "{message}");
    assert!(!message.contains("high"), "the message must not quote the body: {message}");
    recorder.assert_not_called("strict");

    // Strict mode still forwards typed and unknown events.
    let typed = fixture("ticket.created.envelope.json");
    send(&client, signed(&server.url, KEY, typed.clone())).await.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::TicketCreated, &typed, Some((0, "key-0")));
    let unknown = Bytes::from_static(br#"{"event":"chat.label.updated","data":{}}"#);
    send(&client, signed(&server.url, KEY, unknown)).await.assert(StatusCode::OK, "handled");
    assert_eq!(recorder.one().kind, Some(EventKind::Unknown));
    server.stop().await;
}

async fn filtered_events_are_answered_without_the_handler(stack: Stack) {
    let tickets: KindSet = [EventKind::TicketCreated].into_iter().collect();
    let recorder = Recorder::default();
    let server = start(stack, layer().filter_events(tickets), recorder.clone()).await;
    let client = client();

    let message = fixture("message.created.envelope.json");
    let reply = send(&client, signed(&server.url, KEY, message.clone())).await;
    reply.assert(StatusCode::OK, "event_ignored");
    let unknown = Bytes::from_static(br#"{"event":"chat.label.updated","data":{}}"#);
    send(&client, signed(&server.url, KEY, unknown)).await.assert(StatusCode::OK, "event_ignored");
    recorder.assert_not_called("filtered out");

    // The filter runs after verification: a filtered-out kind with a bad signature is still 401.
    let reply = send(&client, post_with(&server.url, message, &["0".repeat(64).as_bytes()])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");

    let ticket = fixture("ticket.created.envelope.json");
    send(&client, signed(&server.url, KEY, ticket.clone())).await.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::TicketCreated, &ticket, Some((0, "key-0")));
    server.stop().await;
}

/// A responder that replaces the default JSON: another shape, a marker header, the same status.
pub fn custom_responder(rejection: &Rejection) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "code": format!("custom.{}", rejection.code()), "ok": false });
    let mut response = Response::new(Full::<Bytes>::from(body.to_string()));
    *response.status_mut() = rejection.status();
    response.headers_mut().insert("x-custom-rejection", http::HeaderValue::from_static("1"));
    response
}

async fn custom_rejection_responder_writes_the_response(stack: Stack) {
    let recorder = Recorder::default();
    let layer = layer().body_limit(LIMIT).on_rejection(custom_responder);
    let server = start(stack, layer, recorder.clone()).await;
    let client = client();
    let body = message("under the limit");

    let reply = send(&client, post_with(&server.url, body.clone(), &[])).await;
    reply.assert(StatusCode::UNAUTHORIZED, "custom.signature_missing");
    assert_eq!(reply.json()["ok"], false);
    assert_eq!(reply.headers["x-custom-rejection"], "1");

    let reply = send(&client, signed(&server.url, KEY, message_of_len(LIMIT + 1))).await;
    reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "custom.payload_too_large");

    // The middleware still adds `Allow: POST` to a 405 that lacks it.
    let request = Request::builder().method(Method::GET).uri(&server.url).body(full(Bytes::new())).unwrap();
    let reply = send(&client, request).await;
    reply.assert(StatusCode::METHOD_NOT_ALLOWED, "custom.method_not_allowed");
    assert_eq!(reply.headers[ALLOW], "POST");
    recorder.assert_not_called("rejected");

    send(&client, signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::MessageCreated, &body, Some((0, "key-0")));
    server.stop().await;
}

async fn insecure_mode_forwards_unsigned_requests(stack: Stack) {
    let recorder = Recorder::default();
    let server = start(stack, PeriskopeWebhookLayer::insecure_without_verification(), recorder.clone()).await;
    let client = client();
    let body = fixture("reaction.created.envelope.json");

    let reply = send(&client, post_with(&server.url, body.clone(), &[])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::ReactionCreated, &body, None);

    // The header is not looked at.
    let reply = send(&client, post_with(&server.url, body.clone(), &[b"not a signature"])).await;
    reply.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::ReactionCreated, &body, None);

    // Everything else still applies.
    let reply = send(&client, post_with(&server.url, Bytes::from_static(b"[]"), &[])).await;
    reply.assert(StatusCode::BAD_REQUEST, "not_an_object");
    recorder.assert_not_called("not a delivery");
    server.stop().await;
}

async fn concurrent_deliveries_are_each_handled_once(stack: Stack) {
    const N: usize = 64;
    let recorder = Recorder::default();
    let server = start(stack, layer(), recorder.clone()).await;
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let client = client.clone();
        let url = server.url.clone();
        tasks.spawn(async move {
            let body = message(&format!("n{i}"));
            let reply = send(&client, signed(&url, KEY, body.clone())).await;
            (body, reply)
        });
    }
    let mut sent = BTreeSet::new();
    while let Some(joined) = within("join", tasks.join_next()).await {
        let (body, reply) = joined.expect("task");
        reply.assert(StatusCode::OK, "handled");
        sent.insert(body);
    }
    assert_eq!(sent.len(), N);
    let seen = recorder.take();
    assert_eq!(seen.len(), N, "each delivery recorded exactly once");
    let received: BTreeSet<Bytes> = seen.iter().map(|seen| seen.body.clone()).collect();
    assert_eq!(received, sent);
    for seen in &seen {
        assert_delivered(seen, EventKind::MessageCreated, &seen.body, Some((0, "key-0")));
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// tonic only: gRPC health and the webhook on one port.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_serves_grpc_health_and_the_webhook_on_one_port() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let recorder = Recorder::default();
    let server = start(Stack::Tonic, layer(), recorder.clone()).await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr)).unwrap();
    let channel = within("gRPC connect", channel.connect()).await.expect("gRPC channel");
    let mut health = HealthClient::new(channel);
    let response = within("health check", health.check(HealthCheckRequest { service: String::new() }))
        .await
        .expect("health check succeeds (not intercepted by the webhook layer)");
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);

    let body = fixture("org.phone.connected.envelope.json");
    send(&client(), signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "handled");
    assert_delivered(&recorder.one(), EventKind::OrgPhoneConnected, &body, Some((0, "key-0")));

    // Health again after the HTTP/1 traffic.
    let response = within("health check", health.check(HealthCheckRequest { service: String::new() }))
        .await
        .expect("health check");
    assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
    server.stop().await;
}

#[test]
fn python_and_the_crate_agree_on_the_test_vector() {
    let (key, body, expected) = test_vector();
    assert_eq!(python_hmac(&key, &body), expected);
    assert_eq!(periskope_webhook::testing::signature(&key, &body), expected);
}
