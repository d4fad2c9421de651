//! Secrets stay out of what the crate prints: no signing key in any `Debug` or `Display`, and,
//! with the `tracing` feature, rejection logs that carry codes and statuses but no body
//! content (message text, phone numbers) and no key.

use std::convert::Infallible;
use std::fmt::Debug;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use periskope_webhook::signature::{EmptyKey, SIGNATURE_HEADER, sign};
use periskope_webhook::{
    DeliveryMetadata, EventKind, KeyMatch, KindSet, PeriskopeWebhookLayer, Rejection, SignatureError,
    SigningKey, SigningKeys,
};
use tower::{Layer, ServiceExt, service_fn};

/// A signing key no output may contain, whole or in part.
const KEY: &str = "peri_SECRET-5f1e0c2a-9d7b-4c3e-b8a1-d0n0tl0g";
const OTHER_KEY: &str = "peri_SECRET-0ther-7a6b5c4d-rotated-k3y";
/// A phone number and a message text that only ever appear in request bodies.
const PHONE: &str = "919999912345@c.us";
const PHONE_DIGITS: &str = "919999912345";
const BODY_TEXT: &str = "Confidential body text Kq7Zx";
const PATH: &str = "/webhooks/periskope";
const LIMIT: usize = 4096;

/// Pieces of the keys distinctive enough that finding one means a key leaked.
fn key_fragments() -> Vec<String> {
    let mut fragments = Vec::new();
    for key in [KEY, OTHER_KEY] {
        fragments.push(key.to_owned());
        fragments.push(key.trim_start_matches("peri_").to_owned());
        fragments.extend(key.split(['-', '_']).filter(|part| part.len() >= 6).map(str::to_owned));
        // Hex and byte-list renderings of the key.
        fragments.push(key.bytes().map(|byte| format!("{byte:02x}")).collect());
        fragments.push(format!("{:?}", &key.as_bytes()[..8]).trim_end_matches(']').to_owned());
    }
    fragments
}

#[track_caller]
fn assert_no_key(what: &str, text: &str) {
    for fragment in key_fragments() {
        assert!(!text.contains(&fragment), "{what} shows key material {fragment:?}: {text}");
    }
}

#[track_caller]
fn assert_no_body_content(what: &str, text: &str) {
    for needle in [PHONE, PHONE_DIGITS, BODY_TEXT, "Kq7Zx"] {
        assert!(!text.contains(needle), "{what} shows body content {needle:?}: {text}");
    }
}

/// `{:?}` and `{:#?}` of `value`, checked for key material.
#[track_caller]
fn check_debug(what: &str, value: &impl Debug) -> String {
    let text = format!("{value:?}\n{value:#?}");
    assert_no_key(what, &text);
    text
}

// ---------------------------------------------------------------------------------------------
// Requests

fn delivery(extra: &str) -> String {
    format!(
        r#"{{"event":"message.created","data":{{"message_id":"m-1","body":"{BODY_TEXT}","from":"{PHONE}","chat_id":"{PHONE}"{extra}}},"org_id":"org-1"}}"#
    )
}

fn request(method: Method, body: impl Into<Bytes>, signatures: &[&str]) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(PATH).header("content-type", "application/json");
    for signature in signatures {
        request = request.header(SIGNATURE_HEADER, *signature);
    }
    request.body(Full::new(body.into())).expect("request")
}

fn signature(key: &str, body: &[u8]) -> String {
    sign(&SigningKey::new(key).expect("non-empty key"), body)
}

fn signed(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    let signature = signature(KEY, &body);
    request(Method::POST, body, &[&signature])
}

/// A body that yields a chunk full of personal data, then fails with an error quoting it.
struct FailingBody {
    sent: bool,
}

impl Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.sent {
            let error = std::io::Error::other(format!("connection reset while reading {PHONE}: {BODY_TEXT}"));
            return Poll::Ready(Some(Err(error)));
        }
        this.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(delivery("")[..80].to_owned())))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

/// The inner service: answers 200 with the `Debug` of the delivery metadata it was given.
async fn inner(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let metadata = request.extensions().get::<DeliveryMetadata>().cloned();
    Ok(Response::new(Full::new(Bytes::from(format!("{metadata:?}")))))
}

/// What came back from the layer: status, the `Rejection` if any, and the body.
struct Answer {
    status: StatusCode,
    rejection: Option<Rejection>,
    body: String,
}

async fn call<B>(layer: &PeriskopeWebhookLayer, request: Request<B>) -> Answer
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<periskope_webhook::BoxError>,
{
    let service = layer.clone().layer(service_fn(inner));
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), service.oneshot(request))
        .await
        .expect("answered in time")
        .expect("infallible");
    let status = response.status();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = response.into_body().collect().await.expect("response body").to_bytes();
    Answer { status, rejection, body: String::from_utf8_lossy(&body).into_owned() }
}

fn layer() -> PeriskopeWebhookLayer {
    PeriskopeWebhookLayer::with_keys(SigningKeys::new(KEY).and_then(|keys| keys.with_key(OTHER_KEY)).unwrap())
        .body_limit(LIMIT)
        .strict(true)
}

/// Held by every test that runs requests through the layer. `tracing` caches per call site
/// whether anyone listens; a test sending requests on another thread with no subscriber while
/// the log tests install theirs can race that cache and lose events, so they take turns.
static LAYER_CALLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One request per rejection kind, each carrying the phone number and the text in its body.
/// Returns each answer with the status and code it must have.
async fn every_rejection() -> Vec<(Answer, StatusCode, &'static str)> {
    let layer = layer();
    let good = delivery("");
    let good_signature = signature(KEY, good.as_bytes());
    let other_signature = signature(OTHER_KEY, b"another body");
    let mut answers = Vec::new();
    let mut expect =
        |answer: Answer, status: StatusCode, code: &'static str| answers.push((answer, status, code));

    expect(
        call(&layer, request(Method::GET, good.clone(), &[&good_signature])).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    expect(
        call(&layer, request(Method::PUT, good.clone(), &[&good_signature])).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Over the limit: by the declared length, and by the body itself.
    let mut declared = signed(good.clone());
    declared.headers_mut().insert(CONTENT_LENGTH, (LIMIT + 1).into());
    expect(call(&layer, declared).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let oversized = delivery(&format!(r#","note":"{}""#, format!("{PHONE} {BODY_TEXT} ").repeat(LIMIT / 16)));
    expect(call(&layer, signed(oversized)).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let failing = Request::post(PATH)
        .header(SIGNATURE_HEADER, &good_signature)
        .body(FailingBody { sent: false })
        .unwrap();
    expect(call(&layer, failing).await, StatusCode::BAD_REQUEST, "body_read_failed");

    let unauthorized = StatusCode::UNAUTHORIZED;
    expect(call(&layer, request(Method::POST, good.clone(), &[])).await, unauthorized, "signature_missing");
    expect(
        call(&layer, request(Method::POST, good.clone(), &[PHONE])).await,
        unauthorized,
        "signature_malformed",
    );
    expect(
        call(&layer, request(Method::POST, good.clone(), &[&other_signature])).await,
        unauthorized,
        "signature_mismatch",
    );
    expect(
        call(&layer, request(Method::POST, good.clone(), &[&good_signature, &other_signature])).await,
        unauthorized,
        "signature_conflict",
    );

    let bad_request = StatusCode::BAD_REQUEST;
    let truncated = good[..good.len() - 30].to_owned();
    expect(call(&layer, signed(truncated)).await, bad_request, "malformed_json");
    let invalid_utf8 = [delivery("").as_bytes(), b"\xff"].concat();
    expect(call(&layer, signed(invalid_utf8)).await, bad_request, "invalid_utf8");
    expect(call(&layer, signed(format!(r#"["{PHONE}","{BODY_TEXT}"]"#))).await, bad_request, "not_an_object");
    expect(
        call(&layer, signed(format!(r#"{{"data":{{"body":"{BODY_TEXT}","from":"{PHONE}"}}}}"#))).await,
        bad_request,
        "missing_event_name",
    );
    let repeated = format!(
        r#"{{"event":"message.created","data":{{"body":"{BODY_TEXT}"}},"org_id":"{PHONE}","org_id":"{PHONE}"}}"#
    );
    expect(call(&layer, signed(repeated)).await, bad_request, "invalid_envelope");

    // Strict mode: the decoder's reason quotes the offending value, the phone number.
    let misfit = delivery(&format!(r#","has_media":"{PHONE}""#));
    expect(call(&layer, signed(misfit)).await, StatusCode::UNPROCESSABLE_ENTITY, "undecodable_data");

    // Accepted, and filtered out: answered 200.
    expect(call(&layer, signed(good.clone())).await, StatusCode::OK, "");
    let none = layer.clone().filter_events(KindSet::empty());
    let service = none.layer(service_fn(inner));
    let response = service.oneshot(signed(good.clone())).await.expect("infallible");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    expect(
        Answer { status, rejection: None, body: String::from_utf8_lossy(&body).into_owned() },
        StatusCode::OK,
        "event_ignored",
    );
    answers
}

// ---------------------------------------------------------------------------------------------
// Debug and Display

#[test]
fn signing_keys_are_redacted_in_debug() {
    let key = SigningKey::new(KEY).unwrap();
    let text = check_debug("SigningKey", &key);
    assert!(text.contains("redacted"), "{text}");
    check_debug("SigningKey with an id", &SigningKey::new(KEY).unwrap().with_id("current"));
    let keys = SigningKeys::new(key.clone().with_id("current")).unwrap().with_key(OTHER_KEY).unwrap();
    check_debug("SigningKeys", &keys);
    check_debug("SigningKeys from one key", &SigningKeys::from(key.clone()));
    check_debug("Result<SigningKey, EmptyKey>", &SigningKey::try_from(KEY));
    check_debug("Result<SigningKey, EmptyKey> (String)", &SigningKey::try_from(KEY.to_owned()));
    assert_no_key("EmptyKey", &format!("{EmptyKey} {EmptyKey:?}"));

    let body = delivery("");
    let matched: KeyMatch =
        keys.verify(signature(OTHER_KEY, body.as_bytes()).as_bytes(), body.as_bytes()).unwrap();
    assert_eq!(matched.index(), 1);
    check_debug("KeyMatch", &matched);
    assert_no_key("KeyMatch::id", matched.id());
}

#[test]
fn layer_and_service_are_redacted_in_debug() {
    let single = PeriskopeWebhookLayer::new(KEY);
    let text = check_debug("PeriskopeWebhookLayer", &single);
    assert!(text.contains("redacted"), "{text}");
    check_debug("PeriskopeWebhookLayer, two keys, configured", &layer());
    check_debug(
        "PeriskopeWebhookLayer, filtered",
        &layer().filter_events([EventKind::MessageCreated].into_iter().collect::<KindSet>()),
    );

    #[derive(Clone, Debug)]
    struct Inner;
    let service = layer().layer(Inner);
    check_debug("PeriskopeWebhook", &service);
    check_debug("PeriskopeWebhook around a service_fn", &layer().layer(service_fn(inner)));
    check_debug("PeriskopeWebhook::get_ref", service.get_ref());
}

#[test]
fn signature_errors_show_no_key() {
    for error in [
        SignatureError::Missing,
        SignatureError::Malformed,
        SignatureError::Mismatch,
        SignatureError::Conflict,
    ] {
        let text = format!("{error} {error:?} {}", error.code());
        assert_no_key("SignatureError", &text);
        assert_no_key("Rejection::Signature", &format!("{0} {0:?}", Rejection::Signature(error)));
    }
}

#[tokio::test]
async fn rejections_and_responses_show_no_key_and_their_display_no_body_content() {
    let _turn = LAYER_CALLS.lock().await;
    let answers = every_rejection().await;
    assert_eq!(answers.len(), 17);
    for (answer, status, code) in &answers {
        assert_eq!(answer.status, *status, "{code}: {}", answer.body);
        assert_no_key(code, &answer.body);
        if status != &StatusCode::OK {
            assert_no_body_content(code, &answer.body);
        }
        let Some(rejection) = &answer.rejection else {
            assert!(matches!(*code, "" | "event_ignored"), "{code}: no Rejection extension");
            continue;
        };
        assert_eq!(rejection.code(), *code);
        assert_eq!(rejection.status(), *status);
        let display = rejection.to_string();
        assert_no_key(code, &display);
        assert_no_body_content(code, &display);
        let debug = check_debug("Rejection", rejection);
        // `Debug` carries the decoder's reason, which may quote the body (documented on
        // `DataError::reason`); every other rejection's `Debug` is as clean as its `Display`.
        match rejection {
            Rejection::UndecodableData { error, .. } => {
                assert!(error.reason().contains(PHONE), "the misfit quotes the value: {}", error.reason());
                assert!(debug.contains(PHONE));
            }
            _ => assert_no_body_content(code, &debug),
        }
    }
    // The accepted delivery's metadata (with its `KeyMatch`), as the handler printed it.
    let (accepted, _, _) = answers.iter().find(|(_, _, code)| code.is_empty()).expect("an accepted delivery");
    assert!(accepted.body.contains("KeyMatch"), "{}", accepted.body);
    assert_no_key("DeliveryMetadata", &accepted.body);
}

// ---------------------------------------------------------------------------------------------
// Logs

#[cfg(feature = "tracing")]
mod logs {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Everything the subscriber writes, in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Runs `f` with a `fmt` subscriber at TRACE writing into memory as this thread's default;
    /// the current-thread runtime of `#[tokio::test]` keeps the service futures on this thread.
    async fn captured<T>(f: impl std::future::Future<Output = T>) -> (T, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        let value = f.await;
        drop(guard);
        (value, captured.text())
    }

    #[tokio::test]
    async fn rejection_logs_carry_codes_and_statuses_only() {
        let _turn = LAYER_CALLS.lock().await;
        let (answers, log) = captured(every_rejection()).await;
        // Every rejection was logged with its code and status.
        let rejected: Vec<_> = answers.iter().filter(|(answer, _, _)| answer.rejection.is_some()).collect();
        assert_eq!(rejected.len(), 15);
        let lines: Vec<&str> =
            log.lines().filter(|line| line.contains("periskope webhook rejected")).collect();
        assert_eq!(lines.len(), rejected.len(), "one line per rejection:\n{log}");
        for ((_, status, code), line) in rejected.iter().zip(&lines) {
            // Below INFO by default: a sender of forged requests must not set the log volume.
            assert!(line.contains("DEBUG"), "{line}");
            assert!(line.contains(code), "{code} missing from {line}");
            assert!(line.contains(&format!("status={}", status.as_u16())), "{status} missing from {line}");
        }
        assert!(log.contains("event_ignored") || log.contains("filtered out"), "{log}");
        // And nothing else: no key, no body content, not even in the debug-level events.
        assert_no_key("the log", &log);
        assert_no_body_content("the log", &log);
    }

    #[tokio::test]
    async fn drift_logs_carry_no_phone_number_from_map_keys() {
        // A chat whose member map is keyed by phone numbers, with an unknown field in a member.
        let body = format!(
            r#"{{"event":"chat.created","data":{{"chat_id":"120363@g.us","members":{{"{PHONE}":{{"contact_id":"{PHONE}","new_field":"{BODY_TEXT}"}}}}}},"org_id":"o-1"}}"#
        );
        let drifting = layer().report_drift(true);
        let _turn = LAYER_CALLS.lock().await;
        let (answer, log) = captured(call(&drifting, signed(body))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(log.contains("periskope schema drift"), "{log}");
        assert!(log.contains("new_field"), "{log}");
        assert_no_key("the drift log", &log);
        assert_no_body_content("the drift log", &log);
    }

    #[tokio::test]
    async fn handler_error_logs_carry_no_phone_number() {
        use periskope_webhook::{EventRouter, WebhookEvent};

        // The usual failing handler: its error quotes the contact and group it was working on.
        let router = EventRouter::new().on_message_created(|_: WebhookEvent| async move {
            Err::<(), _>(format!(
                "CRM refused contact {PHONE} in group 120363297269676566@g.us (tel +{PHONE_DIGITS}, ref 7f3a)"
            ))
        });
        let service = layer().layer(router);
        let _turn = LAYER_CALLS.lock().await;
        let (response, log) = captured(service.oneshot(signed(delivery("")))).await;
        assert_eq!(response.expect("infallible").status(), StatusCode::INTERNAL_SERVER_ERROR);
        let line =
            log.lines().find(|line| line.contains("periskope event handler failed")).unwrap_or_else(|| {
                panic!("no handler failure logged:\n{log}");
            });
        assert!(line.contains("ERROR") && line.contains("message.created"), "{line}");
        // What the error says stays readable; only the numbers are masked.
        assert!(line.contains("CRM refused contact *@c.us in group *@g.us (tel *, ref 7f3a)"), "{line}");
        assert_no_key("the handler failure log", &log);
        assert_no_body_content("the handler failure log", &log);
    }
}
