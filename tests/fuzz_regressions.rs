//! Inputs found by the fuzzers in `fuzz/`, kept as tests. Each asserts the correct behaviour,
//! so a test here fails until its bug is fixed.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::signature::SIGNATURE_HEADER;
use periskope_webhook::{DEFAULT_BODY_LIMIT, PeriskopeWebhookLayer, Rejection};
use tower::{Layer, ServiceExt, service_fn};

#[allow(dead_code)] // The harness is shared; this file uses part of it.
#[path = "../fuzz/harness/service.rs"]
mod service;

#[path = "../fuzz/harness/decode.rs"]
mod decode;

const DELIVERY: &str = r#"{"event":"note.created","data":{"body":"Call back"},"org_id":"o"}"#;

/// `service` target, minimised (`cargo fuzz tmin`): the 14 bytes
/// `8e 13 13 00 00 00 00 00 00 b9 b9 b9 b9 b9` decode to a POST with
/// `content-length: 99999999999999999999999999` (26 nines), the correct signature of the empty
/// body, and an empty body.
///
/// Expected: 413 `payload_too_large` before a byte is read, as for any `Content-Length` over
/// the limit (the layer's docs; RFC 9110 §8.6 asks recipients to anticipate numerals too large
/// for an integer). Found on 800768b (the code was unchanged up to 5e15a56): `parse::<u64>()`
/// failed, the length was ignored, the body read and the request answered 400 `malformed_json`
/// (a valid signed body reached the handler). Fixed in 9a7b835.
#[test]
fn fuzz_service_content_length_beyond_u64_minimised() {
    let body: &[u8] = b"";
    let input = service::Input {
        method: Method::POST,
        headers: vec![
            (CONTENT_LENGTH, HeaderValue::from_static("99999999999999999999999999")),
            (SIGNATURE_HEADER, HeaderValue::from_str(&service::signature(body)).unwrap()),
        ],
        steps: vec![],
        hint: service::HintSpec::Unknown,
        limit: None,
        status: StatusCode::OK,
        handler_yields: 0,
        version: http::Version::HTTP_11,
        filter: None,
    };
    service::run(&input);
}

/// The same bug, with a valid signed delivery: before 9a7b835 a declared length of 2^64 bytes
/// reached the handler (200), while 2^64 - 1 was refused up front (413).
#[tokio::test]
async fn content_length_of_2_pow_64_is_refused_like_2_pow_64_minus_1() {
    for declared in ["18446744073709551615", "18446744073709551616", "000018446744073709551616"] {
        let handler = service_fn(|_request: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("handled")))
        });
        let request = Request::post("/webhooks/periskope")
            .header(CONTENT_LENGTH, declared)
            .header(SIGNATURE_HEADER, service::signature(DELIVERY.as_bytes()))
            .body(Full::new(Bytes::from_static(DELIVERY.as_bytes())))
            .unwrap();
        let response =
            PeriskopeWebhookLayer::new(service::KEY).layer(handler).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "content-length: {declared}");
        assert_eq!(
            response.extensions().get::<Rejection>(),
            Some(&Rejection::PayloadTooLarge { limit: DEFAULT_BODY_LIMIT }),
        );
    }
}

/// Edge inputs met while fuzzing `decode`, through its oracle (decode agrees with
/// `WebhookEvent::decode`, the error fits the bytes, an accepted event re-decodes unchanged).
/// The first one is the input that showed the oracle itself wrong: JSON with a number out of
/// `f64` range is valid JSON (`not_an_object` here), although `serde_json::Value` refuses it.
#[test]
fn decode_edge_inputs() {
    let nested = format!(r#"{{"event":"chat.label.updated","data":{}{}}}"#, "[".repeat(300), "]".repeat(300));
    let inputs: [&[u8]; 9] = [
        b"\n2036850351e308807\n\n\n",
        br#"{"event":"note.created","timestamp":1e400}"#,
        br#"{"event":"note.created","org_id":"\ud800"}"#,
        br#"{"event":"chat.label.updated","data":[1e400,-0,"\u0000"]}"#,
        br#"{"data":{"body":"hi","ack":"2","links":"[]"},"event":null,"event_type":"message.created"}"#,
        br#"{"event":"message.created","event":"message.created","data":{}}"#,
        br#"{"event":"reaction.created","data":{"reaction":"\ud83d\ude00"},"previous_attributes":null}"#,
        b"{\"event\":\"org.phone.qr\",\"data\":{}} \xff",
        nested.as_bytes(),
    ];
    for input in inputs {
        decode::check(input);
    }
}

/// `decode` target, seeded with real-shaped deliveries: `"duration":` followed by a 52-digit
/// integer decoded to `1.2222222222222224e51`, which serialised and decoded again as
/// `1.2222222222222223e51` (serde_json's default float parsing is not correctly rounded).
///
/// Expected: float fields hold the correctly rounded value, so the event survives
/// serialise-then-decode unchanged (the `decode` oracle checks that).
#[test]
fn fuzz_decode_long_float_round_trips() {
    let long = "1222222222222222222222222222222222222222222222222222";
    for (field, value) in [
        ("duration", long.to_owned()),
        ("duration", format!("\"{long}\"")),
        ("flag_response_time", format!("{long}.5e-30")),
        ("duration", "0.30000000000000004441".to_owned()),
        ("duration", "9007199254740993".to_owned()),
        ("duration", "2.2250738585072011e-308".to_owned()),
    ] {
        let body = format!(r#"{{"event":"message.created","data":{{"{field}":{value}}}}}"#);
        decode::check(body.as_bytes());
        let event = periskope_webhook::event::Event::from_json(&body).unwrap();
        let message = event.message().expect("typed");
        let decoded = if field == "duration" { message.duration } else { message.flag_response_time };
        let expected: f64 = value.trim_matches('"').parse().unwrap();
        assert_eq!(decoded.map(f64::to_bits), Some(expected.to_bits()), "{field}: {value}");
    }
    let note =
        r#"{"event":"note.created","data":{"media":{"dimensions":{"ar":1.7777777777777777777777777}}}}"#;
    decode::check(note.as_bytes());
}
