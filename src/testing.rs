//! Helpers for testing your own handlers: sign bodies and build signed requests as Periskope
//! would send them (feature `testing`).
//!
//! ```
//! use periskope_webhook::event::{Event, EventData, Message};
//! use periskope_webhook::testing;
//!
//! let message = Message { body: Some("Hello".into()), ..Message::default() };
//! let event = Event::new(EventData::MessageCreated(Box::new(message))).with_org_id("org-1");
//!
//! let request: http::Request<bytes::Bytes> = testing::signed_request("peri_test-key", "/webhooks/periskope", &event);
//! assert_eq!(request.method(), http::Method::POST);
//! let signature = request.headers()["x-periskope-signature"].to_str().unwrap();
//! assert_eq!(signature, testing::signature("peri_test-key", request.body()));
//! ```

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request};

use crate::event::{Event, WebhookEvent};
use crate::metadata::DeliveryMetadata;
use crate::signature::{KeyMatch, SIGNATURE_HEADER, SigningKey, sign};

/// The [`DeliveryMetadata`] the layer puts next to `delivery` when the first key of its set
/// (`key-0`) verified it: for calling a handler that takes both directly.
///
/// ```
/// use periskope_webhook::event::{Event, EventData, Note};
/// use periskope_webhook::{WebhookEvent, testing};
///
/// let event = Event::new(EventData::NoteCreated(Box::new(Note::default())));
/// let delivery = WebhookEvent::from_event(&event);
/// let metadata = testing::delivery_metadata(&delivery);
/// assert_eq!(metadata.body_len, delivery.body().len());
/// assert_eq!(metadata.key.as_ref().map(|key| key.id()), Some("key-0"));
/// ```
pub fn delivery_metadata(delivery: &WebhookEvent) -> DeliveryMetadata {
    DeliveryMetadata::new(Some(key_match(0, "key-0")), delivery.body().len())
}

/// A [`KeyMatch`] as if the key at `index` in its set, labelled `id`, had verified a request.
pub fn key_match(index: usize, id: &str) -> KeyMatch {
    KeyMatch::new(index, id)
}

/// The compact JSON body Periskope would send for `event`.
pub fn body_for(event: &Event<'_>) -> Bytes {
    Bytes::from(serde_json::to_vec(event).expect("an Event serialises: every map key is a string"))
}

/// `json` as `JSON.stringify` writes it, which is what Periskope sends and signs: the whitespace
/// between tokens removed, everything else (key order, strings with their non-ASCII characters
/// and escapes, numbers) byte for byte. Turns a pretty-printed fixture into a delivery's body;
/// already compact JSON stays as it is.
///
/// ```
/// use periskope_webhook::testing::compact_json;
///
/// let pretty = b"{\n  \"event\": \"note.created\",\n  \"data\": { \"body\": \"caf\xc3\xa9  ok\" }\n}\n";
/// assert_eq!(compact_json(pretty), "{\"event\":\"note.created\",\"data\":{\"body\":\"café  ok\"}}".as_bytes());
/// ```
pub fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            in_string = escaped || byte != b'"';
            escaped = !escaped && byte == b'\\';
        } else if byte.is_ascii_whitespace() {
            continue;
        } else {
            in_string = byte == b'"';
        }
        out.push(byte);
    }
    out
}

/// The `x-periskope-signature` value for `body` signed with `key` (lowercase hex).
///
/// # Panics
///
/// If `key` is empty.
pub fn signature(key: &str, body: &[u8]) -> String {
    sign(&SigningKey::new(key).expect("the signing key must not be empty"), body)
}

/// A POST of `event` to `uri`, signed with `key`, as Periskope sends it.
///
/// # Panics
///
/// If `key` is empty or `uri` is not a valid URI.
pub fn signed_request<B: From<Bytes>>(key: &str, uri: &str, event: &Event<'_>) -> Request<B> {
    signed_request_for_body(key, uri, body_for(event))
}

/// A POST of `body` (sent as is) to `uri`, signed with `key`.
///
/// # Panics
///
/// If `key` is empty or `uri` is not a valid URI.
pub fn signed_request_for_body<B: From<Bytes>>(key: &str, uri: &str, body: impl Into<Bytes>) -> Request<B> {
    let body = body.into();
    let signature = HeaderValue::try_from(signature(key, &body)).expect("hex is a valid header value");
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(B::from(body))
        .expect("a valid URI")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_escapes_and_order() {
        let json = "{ \"b\" : \"x \\\" y\\\\\", \"a\" : [ 1 , \"  é \" ],\n  \"c\": \"\\\\\" }";
        assert_eq!(
            String::from_utf8(compact_json(json.as_bytes())).unwrap(),
            "{\"b\":\"x \\\" y\\\\\",\"a\":[1,\"  é \"],\"c\":\"\\\\\"}"
        );
    }

    #[test]
    fn compact_of_compact_is_the_same() {
        let body = br#"{"event":"x","data":{"s":"a b","n":[1,2.50,-3e4]}}"#;
        assert_eq!(compact_json(body), body);
    }
}
