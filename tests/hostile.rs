//! Hostile requests over real HTTP: an axum server with `PeriskopeWebhookLayer` on 127.0.0.1
//! (ephemeral port), each case bounded in time, each asserting its status and whether the inner
//! handler ran (it must not, unless the exact signed bytes are a delivery).
//!
//! Judgment calls, as the crate behaves today:
//! - A 10,000-digit number in an ignored field is skipped (200, typed); in a typed numeric field
//!   the event is forwarded as `Undecodable` (200; 422 in strict mode); as the envelope's
//!   `timestamp` it is a 400 `invalid_envelope` (the body is valid JSON).
//! - 100,000-deep nesting never recurses: ignored and raw values are skipped iteratively by
//!   serde_json, and typed decoding stops at the first level that does not fit.
//! - A lying `Content-Length` is hyper's to frame: the layer sees exactly the bytes hyper frames
//!   as the body, which must then carry their own valid signature; the leftover bytes are parsed
//!   as a next request (hyper answers 400 and closes when they are not one).
//! - A client that stalls is stopped by timeouts composed OUTSIDE the layer:
//!   `tower_http::timeout::TimeoutLayer` (whole request: 408 here, the status is chosen) or
//!   `RequestBodyTimeoutLayer` (idle body: the body errors, so the layer answers 400
//!   `body_read_failed`). `tower::timeout` would turn the stall into a service error, which axum
//!   needs a `HandleErrorLayer` for; tower-http answers with a response instead.
//! - A signature header over hyper's header buffer (about 400 KiB by default) or more than 100
//!   header lines get hyper's 431 before the layer runs; below that, 401 `signature_malformed`.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use periskope_webhook::{DEFAULT_BODY_LIMIT, PeriskopeWebhookLayer};
use tokio::io::AsyncWriteExt;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// Bound on a whole test.
const CASE: Duration = Duration::from_secs(40);

async fn bounded(case: impl Future<Output = ()>) {
    tokio::time::timeout(CASE, case).await.expect("the case finished in time");
}

fn layer() -> PeriskopeWebhookLayer {
    PeriskopeWebhookLayer::new(KEY)
}

/// Sends `request` and asserts the reply and that the handler did not run.
#[track_caller]
fn refused<'a>(
    client: &'a HttpClient,
    recorder: &'a Recorder,
    request: http::Request<ClientBody>,
    status: StatusCode,
    code: &'a str,
    what: &'a str,
) -> impl Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let reply = send(client, request).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (status, code),
            "{what} (at {caller}): {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        recorder.assert_not_called(what);
    }
}

/// Sends `body` signed, asserts 200 from the handler, which got exactly `body`.
async fn delivered(client: &HttpClient, recorder: &Recorder, url: &str, body: Bytes, what: &str) {
    send(client, signed(url, KEY, body.clone())).await.assert(StatusCode::OK, "handled");
    recorder.assert_called_once_with(what, &body);
}

fn status_and_code(read: Read) -> String {
    match read {
        Read::Response(response) => format!("{} {}", response.status, response.code()),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies that are not deliveries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_signed_and_unsigned() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let client = client();
        let unsigned = post_with(&server.url, Bytes::new(), &[]);
        refused(
            &client,
            &recorder,
            unsigned,
            StatusCode::UNAUTHORIZED,
            "signature_missing",
            "empty, unsigned",
        )
        .await;
        let wrong = post_with(&server.url, Bytes::new(), &[sign(OTHER_KEY, b"").as_bytes()]);
        refused(
            &client,
            &recorder,
            wrong,
            StatusCode::UNAUTHORIZED,
            "signature_mismatch",
            "empty, other key",
        )
        .await;
        let signed_empty = signed(&server.url, KEY, Bytes::new());
        refused(&client, &recorder, signed_empty, StatusCode::BAD_REQUEST, "malformed_json", "empty, signed")
            .await;

        // The same on the wire: `Content-Length: 0`, an empty chunked body, and no framing at all.
        let signature = sign(KEY, b"");
        for framing in ["content-length: 0\r\n", "transfer-encoding: chunked\r\n", ""] {
            let mut stream = connect(server.addr).await;
            let head = head(server.addr, &format!("x-periskope-signature: {signature}\r\n{framing}"));
            write(&mut stream, head.as_bytes()).await;
            if framing.starts_with("transfer-encoding") {
                write(&mut stream, b"0\r\n\r\n").await;
            }
            expect_response(&mut stream, &mut Vec::new()).await.assert(400, "malformed_json");
            recorder.assert_not_called(framing);
        }
        assert_still_serves(&server, &recorder, "empty bodies").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_invalid_json() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let client = client();
        let fixture = fixture("message.created.envelope.json");
        let full = fixture.slice(..fixture.trim_ascii_end().len());
        for cut in [1, 2, 9, full.len() / 3, full.len() / 2, full.len() - 2, full.len() - 1] {
            let truncated = full.slice(..cut);
            let what = format!("truncated to {cut} bytes");
            let request = signed(&server.url, KEY, truncated.clone());
            refused(&client, &recorder, request, StatusCode::BAD_REQUEST, "malformed_json", &what).await;
            // Unverified, it is not even parsed.
            let forged = post_with(&server.url, truncated, &[sign(OTHER_KEY, &full).as_bytes()]);
            refused(&client, &recorder, forged, StatusCode::UNAUTHORIZED, "signature_mismatch", &what).await;
        }
        let invalid: [(&[u8], &str); 12] = [
            (br#"{"event":"message.created","data":{},}"#, "malformed_json"),
            (br#"{"event":"message.created" "data":{}}"#, "malformed_json"),
            (br#"{'event':'message.created','data':{}}"#, "malformed_json"),
            (br#"{"event":"message.created","data":NaN}"#, "malformed_json"),
            (br#"{"event":"message.created","data":{}}}"#, "malformed_json"),
            (br#"{"event":"message.created","data":{"body":"\x41"}}"#, "malformed_json"),
            (b"{\"event\":\"message.created\",\"data\":{\"body\":\"a\x01b\"}}", "malformed_json"),
            (b"\xef\xbb\xbf{\"event\":\"message.created\",\"data\":{}}", "malformed_json"),
            (b"   \r\n\t", "malformed_json"),
            (b"null", "not_an_object"),
            (br#""message.created""#, "not_an_object"),
            (br#"{"data":{"body":"no name"}}"#, "missing_event_name"),
        ];
        for (body, code) in invalid {
            let what = String::from_utf8_lossy(body).into_owned();
            let request = signed(&server.url, KEY, Bytes::from_static(body));
            refused(&client, &recorder, request, StatusCode::BAD_REQUEST, code, &what).await;
        }
        assert_still_serves(&server, &recorder, "invalid JSON").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_inside_strings() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let client = client();
        let bodies: [&[u8]; 8] = [
            b"{\"event\":\"message.created\",\"data\":{\"body\":\"caf\xff\"}}",
            // Overlong encoding of '/'.
            b"{\"event\":\"message.created\",\"data\":{\"body\":\"\xc0\xaf\"}}",
            // A UTF-16 surrogate encoded as UTF-8.
            b"{\"event\":\"message.created\",\"data\":{\"body\":\"\xed\xa0\x80\"}}",
            // Above U+10FFFF.
            b"{\"event\":\"message.created\",\"data\":{\"body\":\"\xf4\x90\x80\x80\"}}",
            // A multi-byte sequence cut by the closing quote.
            b"{\"event\":\"message.created\",\"data\":{\"body\":\"\xe2\x82\"}}",
            b"{\"event\":\"message.cr\xfeeated\",\"data\":{}}",
            b"{\"ev\x80ent\":\"message.created\",\"data\":{}}",
            b"{\"event\":\"message.created\",\"data\":{},\"ignored\":\"\xc3\x28\"}",
        ];
        for body in bodies {
            let what = String::from_utf8_lossy(body).into_owned();
            let request = signed(&server.url, KEY, Bytes::from_static(body));
            refused(&client, &recorder, request, StatusCode::BAD_REQUEST, "invalid_utf8", &what).await;
        }
        assert_still_serves(&server, &recorder, "invalid UTF-8").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_100_000_deep_does_not_overflow_the_stack() {
    bounded(async {
        const DEPTH: usize = 100_000;
        let open = "[".repeat(DEPTH);
        let close = "]".repeat(DEPTH);
        let objects = "{\"a\":".repeat(DEPTH);
        let braces = "}".repeat(DEPTH);
        let recorder = Recorder::default();
        // The deepest body is about 2 MB, well within the default limit.
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let strict = start(Stack::Axum, layer().strict(true), recorder.clone()).await;
        let client = client();

        let refused_cases = [
            (open.clone(), "malformed_json"),
            (format!("{open}{close}"), "not_an_object"),
            (format!("{objects}1{braces}"), "missing_event_name"),
            (format!(r#"{{"event":"message.created","data":{{"x":{open}"#), "malformed_json"),
            (format!(r#"{{"event":"message.created","data":{objects}1"#), "malformed_json"),
        ];
        for (body, code) in refused_cases {
            let what = format!("{}...", &body[..40.min(body.len())]);
            let request = signed(&server.url, KEY, body);
            refused(&client, &recorder, request, StatusCode::BAD_REQUEST, code, &what).await;
        }

        // Deep values where the delivery does not look: skipped without recursion, typed event.
        let million = 1_000_000;
        let ignored_cases = [
            format!(r#"{{"event":"message.created","data":{{"message_id":"deep","x":{open}{close}}}}}"#),
            format!(r#"{{"event":"message.created","data":{{"x":{objects}1{braces}}},"org_id":"o"}}"#),
            format!(r#"{{"event":"message.created","data":{{}},"previous_attributes":{open}{close}}}"#),
            format!(r#"{{"event":"chat.label.updated","data":{open}{close}}}"#),
            format!(r#"{{"deep":{objects}1{braces},"event":"note.created","data":{{}}}}"#),
            format!(
                r#"{{"event":"message.created","data":{{"x":{}{}}}}}"#,
                "[".repeat(million),
                "]".repeat(million)
            ),
        ];
        for body in ignored_cases {
            delivered(&client, &recorder, &server.url, Bytes::from(body), "deep ignored value").await;
        }

        // A deep value where a string is expected: forwarded as undecodable, 422 when strict.
        let misfit = Bytes::from(format!(r#"{{"event":"message.created","data":{{"body":{open}{close}}}}}"#));
        delivered(&client, &recorder, &server.url, misfit.clone(), "deep misfit").await;
        let reply = send(&client, signed(&strict.url, KEY, misfit)).await;
        reply.assert(StatusCode::UNPROCESSABLE_ENTITY, "undecodable_data");
        assert!(String::from_utf8_lossy(&reply.body).contains("data.body"), "{reply:?}");
        recorder.assert_not_called("deep misfit, strict");

        assert_still_serves(&server, &recorder, "deep nesting").await;
        assert_still_serves(&strict, &recorder, "deep nesting, strict").await;
        server.stop().await;
        strict.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_of_10_000_digits() {
    bounded(async {
        let digits = "9".repeat(10_000);
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let strict = start(Stack::Axum, layer().strict(true), recorder.clone()).await;
        let client = client();

        // Where nothing reads them, they are skipped without being converted: a typed event.
        for body in [
            format!(r#"{{"event":"message.created","data":{{"message_id":"n","zzz":{digits}}}}}"#),
            format!(r#"{{"event":"message.created","data":{{}},"n":-{digits}.{digits}e-{digits}}}"#),
            format!(r#"{{"event":"chat.label.updated","data":{{"n":{digits}}}}}"#),
            // A float field takes any number of fraction digits.
            format!(r#"{{"event":"message.created","data":{{"duration":1.{digits}}}}}"#),
        ] {
            let body = Bytes::from(body);
            delivered(&client, &recorder, &server.url, body.clone(), "long number, ignored").await;
            delivered(&client, &recorder, &strict.url, body, "long number, ignored, strict").await;
        }

        // In a typed numeric field they do not fit: forwarded as undecodable, 422 when strict.
        for (field, value) in [
            ("ack", digits.clone()),
            ("ack", format!("-{digits}")),
            ("ack", format!("\"{digits}\"")),
            ("duration", format!("1e{digits}")),
            ("timestamp", digits.clone()),
        ] {
            let body = Bytes::from(format!(r#"{{"event":"message.created","data":{{"{field}":{value}}}}}"#));
            delivered(&client, &recorder, &server.url, body.clone(), field).await;
            let reply = send(&client, signed(&strict.url, KEY, body)).await;
            reply.assert(StatusCode::UNPROCESSABLE_ENTITY, "undecodable_data");
            let message = String::from_utf8_lossy(&reply.body).into_owned();
            assert!(message.contains(&format!("data.{field}")), "{message}");
            assert!(!message.contains("9999"), "the reply must not quote the body: {message}");
            recorder.assert_not_called("long number in a typed field, strict");
        }

        // As the envelope's own timestamp: refused (its code is checked below).
        let body = format!(r#"{{"event":"message.created","data":{{}},"timestamp":{digits}}}"#);
        let reply = send(&client, signed(&server.url, KEY, body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
        recorder.assert_not_called("long number as the envelope timestamp");

        assert_still_serves(&server, &recorder, "long numbers").await;
        assert_still_serves(&strict, &recorder, "long numbers, strict").await;
        server.stop().await;
        strict.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_keys() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let strict = start(Stack::Axum, layer().strict(true), recorder.clone()).await;
        let client = client();

        // Repeated envelope keys are refused: which `data` was meant is ambiguous.
        for body in [
            r#"{"event":"message.created","data":{"body":"a"},"data":{"body":"b"}}"#,
            r#"{"data":{"body":"a"},"event":"message.created","data":{"body":"b"}}"#,
            r#"{"event":"chat.label.updated","data":{},"data":{}}"#,
            r#"{"event":"message.created","event":"note.created","data":{}}"#,
            r#"{"event":"message.created","data":{},"org_id":"a","org_id":"b"}"#,
        ] {
            let request = signed(&server.url, KEY, body);
            refused(&client, &recorder, request, StatusCode::BAD_REQUEST, "invalid_envelope", body).await;
        }

        // A repeated field inside a typed `data` does not fit: forwarded as undecodable at
        // `data`, 422 when strict.
        for body in [
            r#"{"event":"message.created","data":{"body":"a","body":"b"}}"#,
            r#"{"event":"message.created","data":{"ack":1,"ack":2},"org_id":"o"}"#,
            r#"{"event":"ticket.created","data":{"ticket":{"ticket_id":"t","ticket_id":"u"}}}"#,
        ] {
            delivered(&client, &recorder, &server.url, Bytes::from_static(body.as_bytes()), body).await;
            let reply = send(&client, signed(&strict.url, KEY, body)).await;
            reply.assert(StatusCode::UNPROCESSABLE_ENTITY, "undecodable_data");
            recorder.assert_not_called(body);
        }

        // Repeated keys nobody reads, and repeated keys in raw `data`, are fine.
        for body in [
            r#"{"event":"message.created","data":{"zz":1,"zz":2}}"#,
            r#"{"x":1,"x":2,"event":"note.created","data":{}}"#,
            r#"{"event":"chat.label.updated","data":{"k":1,"k":2}}"#,
        ] {
            delivered(&client, &recorder, &server.url, Bytes::from_static(body.as_bytes()), body).await;
            delivered(&client, &recorder, &strict.url, Bytes::from_static(body.as_bytes()), body).await;
        }
        assert_still_serves(&server, &recorder, "duplicate keys").await;
        server.stop().await;
        strict.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Size

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabyte_string_over_the_default_limit() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let head_of = r#"{"event":"message.created","data":{"body":""#;
        let big = Bytes::from(format!(r#"{head_of}{}"}}}}"#, "x".repeat(50_000_000)));
        assert!(big.len() > 2 * DEFAULT_BODY_LIMIT - 4 * 1024 * 1024);
        // The signature does not matter: the size is checked first, and signing 50 MB in a debug
        // build is slow.
        let signature = "0".repeat(64);

        // Declared: refused from the head alone, before a byte of the body is sent.
        let mut stream = connect(server.addr).await;
        let head = head(
            server.addr,
            &format!("x-periskope-signature: {signature}\r\ncontent-length: {}\r\n", big.len()),
        );
        write(&mut stream, head.as_bytes()).await;
        expect_response(&mut stream, &mut Vec::new()).await.assert(413, "payload_too_large");
        // And the connection is closed rather than left waiting for 50 MB.
        assert!(closes(&mut stream).await, "the connection is closed after the 413");
        recorder.assert_not_called("50 MB declared");

        // Streamed without a Content-Length: refused as soon as the limit is crossed, not at the
        // end. Exactly limit + 1 bytes are sent, then the body stays open.
        let (sender, stream) = channel_body(None);
        let feed = {
            let big = big.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                for chunk in big.slice(..DEFAULT_BODY_LIMIT + 1).chunks(1024 * 1024) {
                    if sender.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                // The sender goes back with the count, so the body stays open.
                (sent, sender)
            })
        };
        let reply = send(&client(), streamed(&server.url, stream, &signature)).await;
        reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        let (sent, _open) = within("feed", feed).await.expect("feed task");
        assert_eq!(sent, DEFAULT_BODY_LIMIT + 1, "the answer came before the other 25 MB");
        recorder.assert_not_called("50 MB streamed");

        // Sent whole with its Content-Length by an ordinary client: the 413 comes first, and the
        // server closes while the client may still be writing, so the client sees either the 413
        // or a broken connection. Never the handler.
        match try_send(&client(), post_with(&server.url, big, &[signature.as_bytes()])).await {
            Ok(reply) => reply.assert(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Err(error) => eprintln!("50 MB sent whole: the client saw {error}"),
        }
        recorder.assert_not_called("50 MB sent whole");
        assert_still_serves(&server, &recorder, "50 MB").await;
        server.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Framing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_content_length() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let body = message("lie-fewer");
        let signature = sign(KEY, &body);

        // Fewer bytes declared than sent: the body is the declared prefix, whose signature is
        // not the one sent (401); the rest is not a request (hyper's 400, then close).
        let mut stream = connect(server.addr).await;
        let mut buf = Vec::new();
        let head_fewer = head(
            server.addr,
            &format!("x-periskope-signature: {signature}\r\ncontent-length: {}\r\n", body.len() - 10),
        );
        write(&mut stream, head_fewer.as_bytes()).await;
        write(&mut stream, &body).await;
        expect_response(&mut stream, &mut buf).await.assert(401, "signature_mismatch");
        let leftover = expect_response(&mut stream, &mut buf).await;
        assert_eq!(leftover.status, 400, "{leftover:?}");
        assert!(leftover.head.contains("connection: close"), "{leftover:?}");
        assert!(closes(&mut stream).await);
        recorder.assert_not_called("fewer bytes declared");

        // The declared prefix is itself a signed delivery, and junk follows: the handler gets
        // exactly the signed prefix, and the junk gets hyper's 400.
        let prefix = message("lie-prefix");
        let mut stream = connect(server.addr).await;
        let mut buf = Vec::new();
        let head_prefix = head(
            server.addr,
            &format!("x-periskope-signature: {}\r\ncontent-length: {}\r\n", sign(KEY, &prefix), prefix.len()),
        );
        write(&mut stream, head_prefix.as_bytes()).await;
        write(&mut stream, &[&prefix[..], b"\x00\x01junk\r\n\r\n"].concat()).await;
        expect_response(&mut stream, &mut buf).await.assert(200, "handled");
        recorder.assert_called_once_with("signed prefix", &prefix);
        assert_eq!(expect_response(&mut stream, &mut buf).await.status, 400);
        assert!(closes(&mut stream).await);
        recorder.assert_not_called("junk after the declared body");

        // What follows the declared body is a smuggled request: it is a request of its own,
        // and without a signature of its own it is refused.
        let smuggled = message("smuggled");
        let mut stream = connect(server.addr).await;
        let mut buf = Vec::new();
        let inner_head = head(server.addr, &format!("content-length: {}\r\n", smuggled.len()));
        write(&mut stream, head_prefix.as_bytes()).await;
        write(&mut stream, &[&prefix[..], inner_head.as_bytes(), &smuggled[..]].concat()).await;
        expect_response(&mut stream, &mut buf).await.assert(200, "handled");
        recorder.assert_called_once_with("signed prefix before a smuggled request", &prefix);
        expect_response(&mut stream, &mut buf).await.assert(401, "signature_missing");
        recorder.assert_not_called("smuggled request");
        drop(stream);

        // More declared than sent: the server waits for the rest; what comes next is read as
        // part of the body, which then no longer matches its signature.
        let mut stream = connect(server.addr).await;
        let mut buf = Vec::new();
        let head_more = head(
            server.addr,
            &format!("x-periskope-signature: {signature}\r\ncontent-length: {}\r\n", body.len() + 10),
        );
        write(&mut stream, head_more.as_bytes()).await;
        write(&mut stream, &body).await;
        let early = read_response(&mut stream, &mut buf, Duration::from_millis(300)).await;
        assert!(matches!(early, Read::Silent), "no answer before the declared length: {early:?}");
        write(&mut stream, b"0123456789").await;
        expect_response(&mut stream, &mut buf).await.assert(401, "signature_mismatch");
        recorder.assert_not_called("more bytes declared, then more sent");

        // More declared than sent, then the client half-closes: the body failed.
        let mut stream = connect(server.addr).await;
        write(&mut stream, head_more.as_bytes()).await;
        write(&mut stream, &body).await;
        within("shutdown", stream.shutdown()).await.expect("half-close");
        expect_response(&mut stream, &mut Vec::new()).await.assert(400, "body_read_failed");
        recorder.assert_not_called("more bytes declared, then EOF");

        // Content-Length next to chunked framing (even an absurd one): hyper reads the chunks
        // and closes afterwards; the handler gets exactly the chunked bytes, which were signed.
        for length in ["5", "10737418240", "-1", "abc"] {
            let chunked = message(&format!("chunked-{}", length.len()));
            let mut stream = connect(server.addr).await;
            let head = head(
                server.addr,
                &format!(
                    "x-periskope-signature: {}\r\ntransfer-encoding: chunked\r\ncontent-length: {length}\r\n",
                    sign(KEY, &chunked)
                ),
            );
            let framed =
                [format!("{:x}\r\n", chunked.len()).as_bytes(), &chunked[..], b"\r\n0\r\n\r\n"].concat();
            write(&mut stream, head.as_bytes()).await;
            write(&mut stream, &framed).await;
            let reply = expect_response(&mut stream, &mut Vec::new()).await;
            reply.assert(200, "handled");
            assert!(reply.head.contains("connection: close"), "{reply:?}");
            recorder.assert_called_once_with("Content-Length beside chunked", &chunked);
        }

        // Framing hyper refuses outright (400, no body): the layer never runs.
        for lengths in [
            "content-length: 5\r\ncontent-length: 6\r\n",
            "content-length: -1\r\n",
            "content-length: +5\r\n",
            "content-length: 5, 6\r\n",
            "content-length: abc\r\n",
        ] {
            let mut stream = connect(server.addr).await;
            write(
                &mut stream,
                head(server.addr, &format!("x-periskope-signature: {signature}\r\n{lengths}")).as_bytes(),
            )
            .await;
            write(&mut stream, &body).await;
            let reply = expect_response(&mut stream, &mut Vec::new()).await;
            assert_eq!((reply.status, reply.body.len()), (400, 0), "{lengths}: {reply:?}");
            recorder.assert_not_called(lengths);
        }
        assert_still_serves(&server, &recorder, "lying Content-Length").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_errors_midway() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let body = fixture("message.created.envelope.json");
        let signature = sign(KEY, &body);

        // Chunked framing that breaks after 20 bytes: the body errors, the layer answers 400.
        let mut stream = connect(server.addr).await;
        write(
            &mut stream,
            head(
                server.addr,
                &format!("x-periskope-signature: {signature}\r\ntransfer-encoding: chunked\r\n"),
            )
            .as_bytes(),
        )
        .await;
        write(&mut stream, &[b"14\r\n", &body[..20], b"\r\nzz\r\n"].concat()).await;
        expect_response(&mut stream, &mut Vec::new()).await.assert(400, "body_read_failed");
        recorder.assert_not_called("broken chunk framing");

        // A Content-Length body cut by the client's half-close, and a client whose own body
        // fails midway: `tests/layer` (`connection_closed_midway_never_reaches_the_handler`,
        // `body_failing_midway_never_reaches_the_handler`), on every stack.
        assert_still_serves(&server, &recorder, "body errors").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_timed_out_by_layers_outside() {
    bounded(async {
        const REQUEST_TIMEOUT: Duration = Duration::from_millis(600);
        const BODY_IDLE_TIMEOUT: Duration = Duration::from_millis(400);
        /// How late past its bound a timeout may answer (a loaded debug CI box).
        const SLACK: Duration = Duration::from_secs(3);
        let body = fixture("message.created.envelope.json");
        let signature = sign(KEY, &body);
        let recorder = Recorder::default();

        // The whole request bounded: `Router::layer` puts it outside the webhook layer.
        let bounded_request = serve(
            Stack::Axum,
            router(layer(), recorder.clone())
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT)),
        )
        .await;
        // The body bounded by its idle time.
        let bounded_body = serve(
            Stack::Axum,
            router(layer(), recorder.clone()).layer(RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT)),
        )
        .await;
        let head_for = |server: &Server| {
            head(
                server.addr,
                &format!("x-periskope-signature: {signature}\r\ncontent-length: {}\r\n", body.len()),
            )
        };

        for sent in [0, 100] {
            // Headers (and maybe some of the body), then nothing.
            let mut stream = connect(bounded_request.addr).await;
            let started = Instant::now();
            write(&mut stream, head_for(&bounded_request).as_bytes()).await;
            write(&mut stream, &body[..sent]).await;
            let reply = expect_response(&mut stream, &mut Vec::new()).await;
            let took = started.elapsed();
            assert_eq!(reply.status, 408, "{reply:?}");
            assert!(took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + SLACK, "408 after {took:?}");
            assert!(closes(&mut stream).await, "the stalled connection is closed");
            recorder.assert_not_called("stalled, request timeout");

            let mut stream = connect(bounded_body.addr).await;
            let started = Instant::now();
            write(&mut stream, head_for(&bounded_body).as_bytes()).await;
            write(&mut stream, &body[..sent]).await;
            expect_response(&mut stream, &mut Vec::new()).await.assert(400, "body_read_failed");
            let took = started.elapsed();
            assert!(took >= BODY_IDLE_TIMEOUT && took < BODY_IDLE_TIMEOUT + SLACK, "400 after {took:?}");
            recorder.assert_not_called("stalled, body idle timeout");
        }

        // A trickle (a byte every 100 ms) never trips an idle timeout; the request timeout
        // still ends it.
        let mut stream = connect(bounded_request.addr).await;
        let started = Instant::now();
        write(&mut stream, head_for(&bounded_request).as_bytes()).await;
        let (mut read_half, mut write_half) = stream.into_split();
        let trickle = {
            let body = body.clone();
            tokio::spawn(async move {
                for byte in body.iter().take(100) {
                    if write_half.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read =
                within("trickle answer", tokio::io::AsyncReadExt::read(&mut read_half, &mut chunk)).await;
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        let took = started.elapsed();
        trickle.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + SLACK, "408 after {took:?}");
        recorder.assert_not_called("trickle");

        // Timely deliveries are unaffected.
        assert_still_serves(&bounded_request, &recorder, "stalls, request timeout").await;
        assert_still_serves(&bounded_body, &recorder, "stalls, body timeout").await;
        bounded_request.stop().await;
        bounded_body.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The signature header

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_signature_headers() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let client = client();
        let body = fixture("ticket.created.envelope.json");
        let good = sign(KEY, &body);
        let url = &server.url;
        let unauthorized = StatusCode::UNAUTHORIZED;

        // Not UTF-8, not even ASCII: malformed.
        let mut high = good.clone().into_bytes();
        high[10] = 0x80;
        for value in [vec![0xff; 64], high, [&good.as_bytes()[..62], "é".as_bytes()].concat()] {
            let request = post_with(url, body.clone(), &[&value]);
            refused(&client, &recorder, request, unauthorized, "signature_malformed", "non-ASCII value")
                .await;
        }
        // The same bytes written raw, so no client library normalises them.
        let mut stream = connect(server.addr).await;
        let mut raw =
            format!("POST {PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n", body.len()).into_bytes();
        raw.extend_from_slice(b"x-periskope-signature: \xff\xfe\xfd\r\n\r\n");
        raw.extend_from_slice(&body);
        write(&mut stream, &raw).await;
        expect_response(&mut stream, &mut Vec::new()).await.assert(401, "signature_malformed");
        recorder.assert_not_called("raw non-UTF-8 value");

        // Wrong length, or decorated.
        let doubled = format!("{good}{good}");
        let prefixed = format!("sha256={good}");
        let spaced = format!("{} {}", &good[..32], &good[32..]);
        let longer = format!("{good}0");
        for value in
            [&good[..63], longer.as_str(), doubled.as_str(), "", "0", prefixed.as_str(), spaced.as_str()]
        {
            let request = post_with(url, body.clone(), &[value.as_bytes()]);
            refused(&client, &recorder, request, unauthorized, "signature_malformed", value).await;
        }

        // Oversized: up to hyper's header buffer the layer calls it malformed; past it, hyper
        // answers 431 before the layer runs.
        let big = "a".repeat(64 * 1024);
        let request = post_with(url, body.clone(), &[big.as_bytes()]);
        refused(&client, &recorder, request, unauthorized, "signature_malformed", "64 KiB value").await;
        let mut stream = connect(server.addr).await;
        let huge = head(
            server.addr,
            &format!(
                "x-periskope-signature: {}\r\ncontent-length: {}\r\n",
                "a".repeat(1024 * 1024),
                body.len()
            ),
        );
        // The server may close before taking all of it.
        let _ = stream.write_all(huge.as_bytes()).await;
        let mut buf = Vec::new();
        let answer = read_response(&mut stream, &mut buf, STEP).await;
        assert_eq!(status_and_code(answer), "431 ", "1 MiB value");
        recorder.assert_not_called("1 MiB value");

        // Several copies: identical ones are one signature; disagreeing ones are refused, even
        // when one is right; past hyper's 100 header lines, 431.
        for values in [
            vec![&good, &sign(OTHER_KEY, &body)],
            vec![&sign(OTHER_KEY, &body), &good],
            vec![&good, &good, &sign(KEY, b"other")],
        ] {
            let values: Vec<&[u8]> = values.iter().map(|value| value.as_bytes()).collect();
            let request = post_with(url, body.clone(), &values);
            refused(&client, &recorder, request, unauthorized, "signature_conflict", "disagreeing copies")
                .await;
        }
        let fifty = vec![good.as_bytes(); 50];
        send(&client, post_with(url, body.clone(), &fifty)).await.assert(StatusCode::OK, "handled");
        recorder.assert_called_once_with("50 identical copies", &body);
        let many = vec![good.as_bytes(); 150];
        let reply = send(&client, post_with(url, body.clone(), &many)).await;
        assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{reply:?}");
        recorder.assert_not_called("150 copies");

        // Well-formed, but for something else.
        let for_other_body = sign(KEY, &[&body[..], b"\n"].concat());
        let for_other_key = sign(OTHER_KEY, &body);
        let upper_other = sign(KEY, b"{}").to_ascii_uppercase();
        for value in [&for_other_body, &for_other_key, &upper_other, &"0".repeat(64)] {
            let request = post_with(url, body.clone(), &[value.as_bytes()]);
            refused(&client, &recorder, request, unauthorized, "signature_mismatch", value).await;
        }
        assert_still_serves(&server, &recorder, "signature headers").await;
        server.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Found by this suite, fixed since

/// A syntactically valid body whose envelope field holds a value serde_json cannot convert (a
/// number out of f64 range, a lone surrogate escape) is an `invalid_envelope`, not
/// `malformed_json`: the body is valid JSON. The same values inside `data` are forwarded as
/// `Undecodable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconvertible_envelope_value_in_valid_json_is_an_invalid_envelope() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer(), recorder.clone()).await;
        let client = client();
        let digits = "9".repeat(10_000);
        for body in [
            format!(r#"{{"event":"message.created","data":{{}},"timestamp":{digits}}}"#),
            r#"{"event":"message.created","data":{},"org_id":"\ud800"}"#.to_owned(),
        ] {
            serde_json::from_str::<serde::de::IgnoredAny>(&body).expect("the body is valid JSON");
            let request = signed(&server.url, KEY, body);
            refused(
                &client,
                &recorder,
                request,
                StatusCode::BAD_REQUEST,
                "invalid_envelope",
                "envelope value",
            )
            .await;
        }
        server.stop().await;
    })
    .await;
}

/// A 413 given before the body was read in full (by `Content-Length`, or on crossing the limit
/// while streaming) leaves body bytes unread, so hyper closes the connection after the
/// response; the response says `Connection: close`, so a keep-alive client does not send its
/// next request into the closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_before_the_body_is_read_says_connection_close() {
    bounded(async {
        let recorder = Recorder::default();
        let server = start(Stack::Axum, layer().body_limit(1024), recorder.clone()).await;
        let declared = "content-length: 5000\r\n";
        let chunked = "transfer-encoding: chunked\r\n";
        for framing in [declared, chunked] {
            let mut stream = connect(server.addr).await;
            write(
                &mut stream,
                head(server.addr, &format!("x-periskope-signature: {}\r\n{framing}", "0".repeat(64)))
                    .as_bytes(),
            )
            .await;
            if framing == chunked {
                write(&mut stream, &[b"401\r\n", &[b'x'; 1025][..], b"\r\n"].concat()).await;
            }
            let reply = expect_response(&mut stream, &mut Vec::new()).await;
            reply.assert(413, "payload_too_large");
            assert!(closes(&mut stream).await, "hyper closes the connection");
            assert!(
                reply.head.to_ascii_lowercase().contains("connection: close"),
                "{framing}: {}",
                reply.head
            );
        }
        recorder.assert_not_called("413");
        server.stop().await;
    })
    .await;
}
