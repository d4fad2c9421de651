//! The `service` oracle, shared by `fuzz/fuzz_targets/service.rs` (inputs from `arbitrary`),
//! `tests/service_fuzz.rs` (inputs from proptest) and `tests/fuzz_regressions.rs`.
//!
//! A request (any method, any headers, a body in any chunks with an optional error midway)
//! goes through `PeriskopeWebhookLayer::new(KEY)`, maybe with an event filter, around a
//! recording `tower::service_fn`. The
//! future is polled to completion with a no-op waker. The outcome must be the one the layer's
//! documented steps give: the inner service is called exactly when the method is POST, the body
//! is within the limit and read without error, every signature header holds the correct
//! signature, the body decodes and the filter accepts its kind; then it sees exactly the bytes sent, the same request head,
//! the decoded `WebhookEvent`, `RawBody` and `DeliveryMetadata`, and its 2xx response is passed
//! through. An event the filter refuses is answered `200 event_ignored` with the same checks of
//! the body as any other (its `data` is not typed, which must change nothing else). Otherwise
//! the response carries the right `Rejection`, status and JSON body, and the
//! inner service is never called.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::Full;
use periskope_webhook::signature::{SIGNATURE_HEADER, SignatureError, SigningKey, sign};
use periskope_webhook::{
    DEFAULT_BODY_LIMIT, DeliveryMetadata, EventFilter, EventKind, IgnoredEvent, KindSet,
    PeriskopeWebhookLayer, RawBody, Rejection, WebhookEvent,
};
use tower::{Layer, Service, service_fn};

/// The key the layer verifies with.
pub const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";

/// The path requests are sent to.
const URI: &str = "/webhooks/periskope";

// ---------------------------------------------------------------------------------------------
// The structured description of a request (what the fuzzer and proptest generate).
// ---------------------------------------------------------------------------------------------

/// How to build a request around a body. All-default is a well-formed signed delivery.
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The method.
    pub method: MethodSpec,
    /// The `x-periskope-signature` header(s).
    pub signature: SignatureSpec,
    /// The `content-length` header.
    pub content_length: LengthSpec,
    /// More headers, any name and value.
    pub extra_headers: Vec<(NameSpec, Vec<u8>)>,
    /// Whether the extra headers come before the signature and length headers.
    pub extra_headers_first: bool,
    /// Where the body is cut into data frames (offsets, taken modulo the body length + 1).
    pub cuts: Vec<u16>,
    /// Frames other than data, inserted between data frames (position modulo count + 1).
    pub frames: Vec<(u16, FrameSpec)>,
    /// What the body says of its size.
    pub hint: HintSpec,
    /// A body limit instead of the default.
    pub limit: Option<u16>,
    /// The handler answers `200 + status % 7`.
    pub status: u8,
    /// How many times the handler's future is pending before it answers (modulo 4).
    pub handler_yields: u8,
    /// The HTTP version: 1.1, 1.0, 2, 3, 0.9 (modulo 5).
    pub version: u8,
    /// Only the event kinds whose bit (`EventKind as u32`) is set reach the handler;
    /// `None`: every kind.
    pub filter: Option<u32>,
}

/// The request method.
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default)]
pub enum MethodSpec {
    /// `POST`.
    #[default]
    Post,
    /// `GET`.
    Get,
    /// `PUT`.
    Put,
    /// Any token (an invalid one becomes `PATCH`).
    Token(Vec<u8>),
}

/// The signature header(s).
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default)]
pub enum SignatureSpec {
    /// The correct signature; bits 0-1 of `padding` give leading spaces, bits 2-3 trailing tabs.
    #[default]
    Correct,
    /// The correct signature in another form.
    CorrectPadded {
        /// Uppercase hex.
        uppercase: bool,
        /// Whitespace around it.
        padding: u8,
    },
    /// No signature header.
    Absent,
    /// These 32 bytes as hex.
    Tag([u8; 32]),
    /// These bytes as the value (skipped when not a valid header value).
    Raw(Vec<u8>),
    /// The correct signature twice, the second in uppercase.
    CorrectTwice,
    /// The correct signature, then another value.
    CorrectThen(Vec<u8>),
    /// Another value, then the correct signature.
    ThenCorrect(Vec<u8>),
    /// The correct signature of the body with one hex digit changed.
    OneDigitOff(u8),
    /// The correct signature of other bytes.
    OtherBody(Vec<u8>),
}

/// The `content-length` header.
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, Default)]
pub enum LengthSpec {
    /// The body's real length.
    #[default]
    Actual,
    /// No header.
    Absent,
    /// This number.
    Number(u64),
    /// This many nines.
    Nines(u8),
    /// These bytes (skipped when not a valid header value).
    Raw(Vec<u8>),
}

/// The name of an extra header.
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug)]
pub enum NameSpec {
    /// `x-periskope-signature`.
    Signature,
    /// `content-length`.
    ContentLength,
    /// `content-type`.
    ContentType,
    /// Any bytes (skipped when not a valid header name).
    Raw(Vec<u8>),
}

/// A frame that is not body data.
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, Debug)]
pub enum FrameSpec {
    /// `Poll::Pending` once (after waking the waker).
    Pending,
    /// A trailers frame.
    Trailers,
    /// An empty data frame.
    Empty,
    /// An error; the body ends there.
    Error,
}

/// What the body's `size_hint` says.
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Clone, Copy, Debug, Default)]
pub enum HintSpec {
    /// Nothing (`SizeHint::new()`).
    #[default]
    Unknown,
    /// The exact number of data bytes still to come.
    Exact,
    /// This fixed lower bound and upper bound (`upper` is added to `lower`), however much is read.
    Fixed {
        /// The lower bound.
        lower: u64,
        /// The upper bound minus the lower one.
        upper: Option<u64>,
    },
}

// ---------------------------------------------------------------------------------------------
// The concrete request.
// ---------------------------------------------------------------------------------------------

/// One step of the request body.
#[derive(Clone, Debug)]
pub enum Step {
    /// A data frame.
    Data(Bytes),
    /// A trailers frame.
    Trailers,
    /// `Poll::Pending` once.
    Pending,
    /// An error.
    Error,
}

/// A concrete request and layer configuration.
#[derive(Clone, Debug)]
pub struct Input {
    /// The method.
    pub method: Method,
    /// The headers, in order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub steps: Vec<Step>,
    /// The body's size hint.
    pub hint: HintSpec,
    /// The body limit (`None`: the default).
    pub limit: Option<usize>,
    /// The handler's status.
    pub status: StatusCode,
    /// How many times the handler's future is pending.
    pub handler_yields: u8,
    /// The request's HTTP version.
    pub version: Version,
    /// The event filter (`None`: every kind).
    pub filter: Option<KindSet>,
}

/// The correct signature of `body` under [`KEY`].
pub fn signature(body: &[u8]) -> String {
    sign(&SigningKey::new(KEY).expect("a non-empty key"), body)
}

/// Builds the request `spec` describes around `body`.
pub fn build(spec: &Spec, body: &[u8]) -> Input {
    let method = match &spec.method {
        MethodSpec::Post => Method::POST,
        MethodSpec::Get => Method::GET,
        MethodSpec::Put => Method::PUT,
        MethodSpec::Token(token) => Method::from_bytes(token).unwrap_or(Method::PATCH),
    };

    let correct = signature(body);
    let mut signatures: Vec<Vec<u8>> = match &spec.signature {
        SignatureSpec::Correct => vec![correct.clone().into_bytes()],
        SignatureSpec::CorrectPadded { uppercase, padding } => {
            let hex = if *uppercase { correct.to_uppercase() } else { correct.clone() };
            let left = " ".repeat(usize::from(padding & 3));
            let right = "\t".repeat(usize::from((padding >> 2) & 3));
            vec![format!("{left}{hex}{right}").into_bytes()]
        }
        SignatureSpec::Absent => vec![],
        SignatureSpec::Tag(tag) => {
            vec![tag.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()]
        }
        SignatureSpec::Raw(raw) => vec![raw.clone()],
        SignatureSpec::CorrectTwice => {
            vec![correct.clone().into_bytes(), correct.to_uppercase().into_bytes()]
        }
        SignatureSpec::CorrectThen(raw) => vec![correct.clone().into_bytes(), raw.clone()],
        SignatureSpec::ThenCorrect(raw) => vec![raw.clone(), correct.clone().into_bytes()],
        SignatureSpec::OneDigitOff(at) => {
            let mut hex = correct.clone().into_bytes();
            let at = usize::from(*at) % hex.len();
            hex[at] = if hex[at] == b'0' { b'1' } else { b'0' };
            vec![hex]
        }
        SignatureSpec::OtherBody(other) => vec![signature(other).into_bytes()],
    };
    let signatures: Vec<_> = signatures
        .drain(..)
        .filter_map(|value| HeaderValue::from_bytes(&value).ok())
        .map(|value| (SIGNATURE_HEADER, value))
        .collect();

    let length = match &spec.content_length {
        LengthSpec::Actual => Some(HeaderValue::from(body.len())),
        LengthSpec::Absent => None,
        LengthSpec::Number(number) => Some(HeaderValue::from(*number)),
        LengthSpec::Nines(count) => HeaderValue::from_str(&"9".repeat(usize::from(*count % 40) + 1)).ok(),
        LengthSpec::Raw(raw) => HeaderValue::from_bytes(raw).ok(),
    };
    let mut headers = Vec::new();
    let extra: Vec<_> = spec
        .extra_headers
        .iter()
        .filter_map(|(name, value)| {
            let name = match name {
                NameSpec::Signature => SIGNATURE_HEADER,
                NameSpec::ContentLength => CONTENT_LENGTH,
                NameSpec::ContentType => CONTENT_TYPE,
                NameSpec::Raw(raw) => HeaderName::from_bytes(raw).ok()?,
            };
            Some((name, HeaderValue::from_bytes(value).ok()?))
        })
        .collect();
    if spec.extra_headers_first {
        headers.extend(extra.iter().cloned());
    }
    headers.extend(length.map(|value| (CONTENT_LENGTH, value)));
    headers.extend(signatures);
    if !spec.extra_headers_first {
        headers.extend(extra);
    }

    let mut cuts: Vec<usize> = spec.cuts.iter().map(|&cut| usize::from(cut) % (body.len() + 1)).collect();
    cuts.push(0);
    cuts.push(body.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut steps: Vec<Step> =
        cuts.windows(2).map(|pair| Step::Data(Bytes::copy_from_slice(&body[pair[0]..pair[1]]))).collect();
    for (at, frame) in &spec.frames {
        let at = usize::from(*at) % (steps.len() + 1);
        let step = match frame {
            FrameSpec::Pending => Step::Pending,
            FrameSpec::Trailers => Step::Trailers,
            FrameSpec::Empty => Step::Data(Bytes::new()),
            FrameSpec::Error => Step::Error,
        };
        steps.insert(at, step);
    }

    Input {
        method,
        headers,
        steps,
        hint: spec.hint,
        limit: spec.limit.map(usize::from),
        status: StatusCode::from_u16(200 + u16::from(spec.status % 7)).expect("2xx"),
        handler_yields: spec.handler_yields % 4,
        version: [Version::HTTP_11, Version::HTTP_10, Version::HTTP_2, Version::HTTP_3, Version::HTTP_09]
            [usize::from(spec.version % 5)],
        filter: spec.filter.map(|mask| {
            EventKind::ALL
                .into_iter()
                .chain([EventKind::Unknown])
                .filter(|&kind| mask & (1 << kind as u32) != 0)
                .collect()
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The body and the handler.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

#[derive(Default)]
struct BodyLog {
    polls: Cell<usize>,
    ended: Cell<bool>,
    polled_after_end: Cell<bool>,
}

/// Yields the steps in order; records how it was polled.
struct TestBody {
    steps: VecDeque<Step>,
    hint: HintSpec,
    log: Rc<BodyLog>,
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Boom;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Boom>>> {
        let this = self.get_mut();
        this.log.polls.set(this.log.polls.get() + 1);
        if this.log.ended.get() {
            this.log.polled_after_end.set(true);
            return Poll::Ready(None);
        }
        match this.steps.pop_front() {
            None => {
                this.log.ended.set(true);
                Poll::Ready(None)
            }
            Some(Step::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Step::Trailers) => {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-trailer", HeaderValue::from_static("1"));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Some(Step::Pending) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Error) => {
                this.log.ended.set(true);
                Poll::Ready(Some(Err(Boom)))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.hint {
            HintSpec::Unknown => SizeHint::new(),
            HintSpec::Exact => {
                let rest = self.steps.iter().map(|step| match step {
                    Step::Data(data) => data.len() as u64,
                    _ => 0,
                });
                SizeHint::with_exact(rest.sum())
            }
            HintSpec::Fixed { lower, upper } => {
                let mut hint = SizeHint::new();
                hint.set_lower(lower);
                if let Some(extra) = upper {
                    hint.set_upper(lower.saturating_add(extra));
                }
                hint
            }
        }
    }
}

/// What the handler saw.
#[derive(Default)]
struct Seen {
    calls: usize,
    method: Option<Method>,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
    event: Option<WebhookEvent>,
    raw: Option<RawBody>,
    metadata: Option<DeliveryMetadata>,
}

/// Pending `count` times (waking the waker each time), then ready.
struct Yield(u8);

impl Future for Yield {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Polls `future` with a no-op waker until it is ready; every future here needs no I/O, so a
/// bounded number of polls is enough.
fn block_on<F: Future>(future: F, max_polls: usize) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..max_polls {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the future was still pending after {max_polls} polls");
}

// ---------------------------------------------------------------------------------------------
// The oracle.
// ---------------------------------------------------------------------------------------------

/// What the layer's documented steps say must happen.
#[derive(Debug)]
enum Expected {
    /// The handler gets the body and the event.
    Handled { body: Bytes, event: WebhookEvent },
    /// A valid delivery of a kind the filter refuses: `200 event_ignored`, no handler.
    Ignored(EventKind),
    /// This rejection, without reading the body (`early`) or after.
    Rejected { rejection: Rejection, early: bool },
    /// A signature rejection, one of these.
    Signature(Vec<SignatureError>),
}

fn reference_tag(value: &[u8]) -> Option<String> {
    let digits = value.trim_ascii();
    (digits.len() == 64 && digits.iter().all(u8::is_ascii_hexdigit))
        .then(|| digits.to_ascii_lowercase())
        .map(|digits| String::from_utf8(digits).expect("hex digits are ASCII"))
}

fn expected(input: &Input) -> Expected {
    let limit = input.limit.unwrap_or(DEFAULT_BODY_LIMIT);
    let too_large = Rejection::PayloadTooLarge { limit };
    // 1. Only POST.
    if input.method != Method::POST {
        return Expected::Rejected { rejection: Rejection::MethodNotAllowed, early: true };
    }
    // 2. A declared length over the limit, before reading: the first `content-length`, if it
    //    is a numeral (RFC 9110: 1*DIGIT, of any size; whitespace around it is tolerated).
    let declared = input.headers.iter().find(|(name, _)| name == CONTENT_LENGTH).map(|(_, value)| value);
    if let Some(digits) = declared.map(|value| value.as_bytes().trim_ascii()) {
        let significant = &digits[digits.iter().take_while(|&&d| d == b'0').count()..];
        let over = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (significant.len() > 20
                || std::str::from_utf8(significant).expect("digits").parse::<u128>().unwrap_or(0)
                    > limit as u128);
        if over {
            return Expected::Rejected { rejection: too_large, early: true };
        }
    }
    // A size hint promising more than the limit, before reading.
    let promised = match input.hint {
        HintSpec::Unknown => 0,
        HintSpec::Exact => input
            .steps
            .iter()
            .map(|step| if let Step::Data(data) = step { data.len() as u64 } else { 0 })
            .sum(),
        HintSpec::Fixed { lower, .. } => lower,
    };
    if promised > limit as u64 {
        return Expected::Rejected { rejection: too_large, early: true };
    }
    // Reading: data up to the limit, or the first error.
    let mut body = Vec::new();
    for step in &input.steps {
        match step {
            Step::Data(data) if body.len() + data.len() > limit => {
                return Expected::Rejected { rejection: too_large, early: false };
            }
            Step::Data(data) => body.extend_from_slice(data),
            Step::Error => return Expected::Rejected { rejection: Rejection::BodyRead, early: false },
            Step::Trailers | Step::Pending => {}
        }
    }
    // 3. Every signature header copy must hold the correct signature.
    let correct = signature(&body);
    let copies: Vec<Option<String>> = input
        .headers
        .iter()
        .filter(|(name, _)| name == SIGNATURE_HEADER)
        .map(|(_, value)| reference_tag(value.as_bytes()))
        .collect();
    let valid: Vec<&String> = copies.iter().flatten().collect();
    let malformed = copies.iter().any(Option::is_none);
    let disagree = valid.windows(2).any(|pair| pair[0] != pair[1]);
    let mut allowed = Vec::new();
    if copies.is_empty() {
        allowed.push(SignatureError::Missing);
    }
    if malformed {
        allowed.push(SignatureError::Malformed);
    }
    if disagree {
        allowed.push(SignatureError::Conflict);
    }
    if !copies.is_empty() && !malformed && !disagree && *valid[0] != correct {
        allowed.push(SignatureError::Mismatch);
    }
    if !allowed.is_empty() {
        return Expected::Signature(allowed);
    }
    // 4. The verified body decodes (fully: skipping `data` for a refused kind changes nothing).
    // 5. The filter accepts its kind.
    let body = Bytes::from(body);
    match WebhookEvent::decode(body.clone()) {
        Ok(event) if input.filter.is_some_and(|filter| !filter.accepts(event.kind())) => {
            Expected::Ignored(event.kind())
        }
        Ok(event) => Expected::Handled { body, event },
        Err(error) => Expected::Rejected { rejection: Rejection::Decode(error), early: false },
    }
}

/// Sends the request through the layer and checks the outcome; panics on a violation.
pub fn run(input: &Input) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let recorder = Rc::clone(&seen);
    let (status, yields) = (input.status, input.handler_yields);
    let handler = service_fn(move |request: Request<Full<Bytes>>| {
        let seen = Rc::clone(&recorder);
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap_or_else(|never| match never {}).to_bytes();
            {
                let mut seen = seen.borrow_mut();
                seen.calls += 1;
                seen.method = Some(parts.method);
                seen.uri = parts.uri.to_string();
                seen.headers = parts.headers;
                seen.body = body.to_vec();
                seen.event = parts.extensions.get::<WebhookEvent>().cloned();
                seen.raw = parts.extensions.get::<RawBody>().cloned();
                seen.metadata = parts.extensions.get::<DeliveryMetadata>().cloned();
            }
            Yield(yields).await;
            let response = Response::builder().status(status).body(Full::<Bytes>::from("handled"));
            Ok::<_, Infallible>(response.expect("a valid response"))
        }
    });
    let mut layer = PeriskopeWebhookLayer::new(KEY);
    if let Some(limit) = input.limit {
        layer = layer.body_limit(limit);
    }
    if let Some(filter) = input.filter {
        layer = layer.filter_events(filter);
    }
    let mut service = layer.layer(handler);

    let mut request = Request::builder()
        .method(input.method.clone())
        .uri(URI)
        .version(input.version)
        .body(())
        .expect("a request");
    for (name, value) in &input.headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    let log = Rc::new(BodyLog::default());
    let body =
        TestBody { steps: input.steps.iter().cloned().collect(), hint: input.hint, log: Rc::clone(&log) };
    let request = request.map(|()| body);
    let sent_headers = request.headers().clone();

    let max_polls = input.steps.len() + usize::from(input.handler_yields) + 8;
    let ready =
        block_on(std::future::poll_fn(|cx| Service::<Request<TestBody>>::poll_ready(&mut service, cx)), 1);
    ready.unwrap_or_else(|never| match never {});
    let response = block_on(service.call(request), max_polls).unwrap_or_else(|never| match never {});
    let (parts, response_body) = response.into_parts();
    let response_body = block_on(response_body.collect(), 4)
        .expect("the layer's and the handler's bodies do not fail")
        .to_bytes();
    let rejection = parts.extensions.get::<Rejection>();

    assert!(!log.polled_after_end.get(), "the body was polled after it ended or failed");
    let seen = seen.borrow();
    match expected(input) {
        Expected::Handled { body, event } => {
            assert_eq!(rejection, None, "a valid delivery was rejected");
            assert_eq!(seen.calls, 1, "the handler was not called once");
            assert_eq!(parts.status, input.status, "the handler's status was not passed through");
            assert_eq!(response_body, "handled");
            assert_eq!(parts.headers.get(CONNECTION), None);
            assert!(log.ended.get(), "the body was not read to its end");
            assert_eq!(seen.method, Some(Method::POST));
            assert_eq!(seen.uri, URI);
            assert_eq!(seen.headers, sent_headers, "the handler saw other headers");
            assert_eq!(seen.body, body, "the handler saw other bytes than were sent");
            let seen_event = seen.event.as_ref().expect("no WebhookEvent in the extensions");
            assert_eq!(seen_event, &event);
            assert_eq!(seen_event.body(), &body);
            assert_eq!(seen.raw.as_ref().map(|raw| &raw.0), Some(&body));
            let metadata = seen.metadata.as_ref().expect("no DeliveryMetadata in the extensions");
            assert_eq!(metadata.body_len, body.len());
            assert_eq!(metadata.key.as_ref().map(|key| (key.index(), key.id())), Some((0, "key-0")));
        }
        Expected::Ignored(kind) => {
            assert_eq!(rejection, None, "a valid delivery of a refused kind was rejected");
            assert_eq!(seen.calls, 0, "the handler was called for an event the filter refuses");
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(parts.extensions.get::<IgnoredEvent>(), Some(&IgnoredEvent(kind)));
            let json: serde_json::Value = serde_json::from_slice(&response_body).expect("a JSON body");
            assert_eq!(json["code"], "event_ignored");
            assert!(log.ended.get(), "the body was not read to its end");
        }
        Expected::Rejected { rejection: expected, early } => {
            assert_eq!(rejection, Some(&expected), "status {}", parts.status);
            if early {
                assert_eq!(log.polls.get(), 0, "the body was read before {expected:?}");
            }
            check_rejection(&parts, &response_body, &expected, seen.calls, input.version);
        }
        Expected::Signature(allowed) => {
            let Some(Rejection::Signature(error)) = rejection else {
                panic!("expected one of {allowed:?}, got {rejection:?} (status {})", parts.status);
            };
            assert!(allowed.contains(error), "expected one of {allowed:?}, got {error:?}");
            check_rejection(&parts, &response_body, rejection.expect("some"), seen.calls, input.version);
        }
    }
}

fn check_rejection(
    parts: &http::response::Parts,
    body: &Bytes,
    rejection: &Rejection,
    calls: usize,
    version: Version,
) {
    assert_eq!(calls, 0, "the handler was called for a request rejected with {rejection:?}");
    assert_eq!(parts.status, rejection.status());
    assert!(!parts.status.is_success());
    let json: serde_json::Value = serde_json::from_slice(body).expect("a JSON rejection body");
    assert_eq!(json["code"], rejection.code());
    assert_eq!(json["message"], rejection.to_string());
    let allow = parts.headers.get(ALLOW);
    if *rejection == Rejection::MethodNotAllowed {
        assert_eq!(allow.map(HeaderValue::as_bytes), Some(&b"POST"[..]));
    } else {
        assert_eq!(allow, None);
    }
    // A body refused for its size is left unread: an HTTP/1 connection cannot be reused.
    let close = matches!(rejection, Rejection::PayloadTooLarge { .. }) && version < Version::HTTP_2;
    let connection = parts.headers.get(CONNECTION).map(HeaderValue::as_bytes);
    assert_eq!(
        connection,
        close.then_some(&b"close"[..]),
        "connection header for {rejection:?} over {version:?}"
    );
}
