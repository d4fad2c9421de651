//! The `decode` oracle, shared by `fuzz/fuzz_targets/decode.rs` and `tests/fuzz_regressions.rs`.
//!
//! For any bytes: `Event::from_slice` and `WebhookEvent::decode` never panic and agree; an
//! accepted body is a JSON object whose name, `org_id` and unknown `data` are what the event
//! reports; and an accepted event survives serialise-then-decode unchanged, with a stable
//! serialisation.

use bytes::Bytes;
use periskope_webhook::event::{DecodeError, Event, EventKind, WebhookEvent};
use serde_json::Value;

/// Runs every check on `bytes`; panics with a description on the first violation.
pub fn check(bytes: &[u8]) {
    let result = Event::from_slice(bytes);
    let body = Bytes::copy_from_slice(bytes);
    let owned = WebhookEvent::decode(body.clone());
    match (&result, &owned) {
        (Ok(event), Ok(owned)) => {
            assert_eq!(owned.event(), event, "WebhookEvent::decode and Event::from_slice disagree");
            assert_eq!(owned.body().as_ptr(), body.as_ptr(), "WebhookEvent copied its body");
        }
        (Err(error), Err(owned_error)) => assert_eq!(error, owned_error),
        _ => panic!("Event::from_slice and WebhookEvent::decode disagree: {result:?} vs {owned:?}"),
    }

    let event = match result {
        Ok(event) => event,
        Err(error) => return check_error(bytes, &error),
    };
    exercise(&event);
    check_against_json(bytes, &event);

    // Serialise, decode again: the same event, and the same bytes when serialised once more.
    let written = serde_json::to_vec(&event).expect("a decoded event serialises");
    let again = Event::from_slice(&written).unwrap_or_else(|error| {
        panic!("the serialised event does not decode: {error}\n{}", String::from_utf8_lossy(&written))
    });
    assert_eq!(
        again,
        event,
        "serialise-then-decode changed the event\n input: {}\nwritten: {}",
        String::from_utf8_lossy(bytes),
        String::from_utf8_lossy(&written),
    );
    let rewritten = serde_json::to_vec(&again).expect("a decoded event serialises");
    assert_eq!(
        String::from_utf8_lossy(&rewritten),
        String::from_utf8_lossy(&written),
        "serialisation is not stable"
    );
    // What a test would build for this event is what the middleware would hand on.
    let rebuilt = WebhookEvent::from_event(&event);
    assert_eq!(rebuilt.event(), &event);
    assert_eq!(rebuilt.body().as_ref(), written.as_slice());
}

/// Whether `text` is JSON by the grammar. `serde_json::Value` is stricter: it refuses numbers
/// out of `f64` range (`1e400`) and nesting past 128 levels, both valid JSON.
fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn is_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{')
}

/// A rejected body: the error is the right one for what the bytes are.
fn check_error(bytes: &[u8], error: &DecodeError) {
    assert!(!error.code().is_empty() && !error.to_string().is_empty());
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(utf8) => {
            assert_eq!(error, &DecodeError::InvalidUtf8 { valid_up_to: utf8.valid_up_to() });
            return;
        }
    };
    match (is_json(text), is_object(text)) {
        // Not JSON: a syntax error, or (for an object) a field of the wrong type found first.
        (false, false) => {
            assert!(matches!(error, DecodeError::Malformed { .. }), "not JSON, rejected as {error:?}")
        }
        (false, true) => assert!(
            matches!(error, DecodeError::Malformed { .. } | DecodeError::InvalidEnvelope { .. }),
            "not JSON, rejected as {error:?}"
        ),
        (true, false) => assert_eq!(error, &DecodeError::NotAnObject),
        // A JSON object (numbers out of `f64` range and lone surrogates included): no name or a
        // bad envelope, never `Malformed`.
        (true, true) => assert!(
            matches!(error, DecodeError::MissingEventName | DecodeError::InvalidEnvelope { .. }),
            "a JSON object rejected as {error:?}"
        ),
    }
}

/// An accepted body is a JSON object, and the envelope fields are the ones in it.
fn check_against_json(bytes: &[u8], event: &Event<'_>) {
    let text = std::str::from_utf8(bytes).expect("an accepted body is UTF-8");
    assert!(is_json(text) && is_object(text), "accepted a body that is not a JSON object: {event:?}");
    // `Value` refuses some valid JSON (see `is_json`); the field checks need it.
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else { return };
    let string = |key: &str| object.get(key).and_then(Value::as_str);
    let name = string("event").or_else(|| string("event_type"));
    assert_eq!(Some(event.name()), name, "the event name is not the one sent");
    assert_eq!(event.kind(), EventKind::from_name(event.name()));
    assert_eq!(event.org_id.as_deref(), string("org_id"), "org_id is not the one sent");
    if event.kind() == EventKind::Unknown {
        let raw = event.raw_data().expect("an unknown event keeps its data");
        let sent = object.get("data").cloned().unwrap_or(Value::Null);
        assert_eq!(serde_json::from_str::<Value>(raw.get()).ok(), Some(sent), "unknown data changed");
    }
    match (&event.previous_attributes, object.get("previous_attributes")) {
        (None, None | Some(Value::Null)) => {}
        (Some(raw), Some(sent)) => {
            assert_eq!(serde_json::from_str::<Value>(raw.get()).ok().as_ref(), Some(sent));
        }
        (kept, sent) => panic!("previous_attributes: kept {kept:?}, sent {sent:?}"),
    }
}

/// Uses every accessor, so that a panic anywhere on the read side shows up.
fn exercise(event: &Event<'_>) {
    let _ = (event.kind(), event.name(), event.is_typed(), event.data_error(), event.raw_data());
    let _ = (event.message(), event.reaction(), event.chat(), event.note(), event.ticket(), event.phone());
    let _ = (event.chat_notification(), format!("{event:?}"));
    if let Some(timestamp) = &event.timestamp {
        let _ = (timestamp.as_text(), timestamp.as_number(), timestamp.unix_millis(), timestamp.to_string());
        if let Some(time) = timestamp.parse() {
            let _ = (time.unix_seconds(), time.subsec_nanos(), time.unix_millis(), time.offset_seconds());
            let _ = time.to_system_time();
        }
    }
    if let Some(error) = event.data_error() {
        assert!(error.path().starts_with("data"), "data error path {:?}", error.path());
        let _ = (error.reason(), error.to_string());
    }
    if let Some(message) = event.message() {
        let _ = message.timestamp.as_ref().map(|t| t.unix_millis());
        let _ = message.links.as_ref().map(|links| (links.items().len(), links.is_empty()));
    }
}
