//! The one test harness: the stacks a webhook is served on ([`Stack`], [`serve`], [`Server`],
//! `for_each_stack!`), a handler that records what reaches it behind the layer, an HTTP client,
//! and a raw-TCP HTTP/1 exchange for requests a well-behaved client would never send.
// Each test file uses a different subset.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod postgres;
pub mod spans;
mod stack;

pub(crate) use stack::for_each_stack;
pub use stack::{Server, Stack, serve};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::signature::SIGNATURE_HEADER;
use periskope_webhook::{DeliveryMetadata, EventKind, PeriskopeWebhookLayer, RawBody, WebhookEvent};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{Layer, service_fn};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ClientBody = BoxBody<Bytes, BoxError>;
pub type HttpClient = Client<HttpConnector, ClientBody>;

/// The signing key the servers verify with.
pub const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
/// Another key: its signatures are well-formed and wrong.
pub const OTHER_KEY: &str = "peri_0a1b2c3d-0000-4000-8000-000000000000";
/// The route the webhook is served on.
pub const PATH: &str = "/webhooks/periskope";
/// Bound on every single await on the network.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`STEP`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

// ---------------------------------------------------------------------------------------------
// Bodies

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// The fixture `name`: a delivery from `deliveries/`, anything else from beside it.
pub fn fixture(name: &str) -> Bytes {
    let path = if is_delivery(name) {
        fixtures_dir().join("deliveries").join(name)
    } else {
        fixtures_dir().join(name)
    };
    Bytes::from(std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display())))
}

/// The `*.envelope.json` fixtures, sorted; each has a top-level `"org_id"` line.
pub fn envelope_fixture_names() -> Vec<String> {
    fixture_names(|name| name.ends_with(".envelope.json"))
}

/// Every delivery fixture: `*.envelope.json` and `field-observed.*.json`, sorted.
pub fn delivery_fixture_names() -> Vec<String> {
    fixture_names(is_delivery)
}

fn is_delivery(name: &str) -> bool {
    name.ends_with(".envelope.json") || name.starts_with("field-observed.")
}

fn fixture_names(keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join("deliveries"))
        .expect("tests/fixtures/deliveries exists")
        .map(|entry| entry.expect("dir entry").file_name().into_string().expect("UTF-8 name"))
        .filter(|name| keep(name))
        .collect();
    names.sort();
    names
}

/// `fixture` with its top-level `org_id` (the line `  "org_id": "..."`) replaced by `id`, which
/// must need no JSON escaping.
pub fn with_org_id(fixture: &str, id: &str) -> String {
    let start = fixture.find("\n  \"org_id\": \"").expect("a top-level org_id line") + 1;
    let end = start + fixture[start..].find('\n').expect("line end");
    let line = &fixture[start..end];
    let comma = if line.ends_with(',') { "," } else { "" };
    format!("{}  \"org_id\": \"{id}\"{comma}{}", &fixture[..start], &fixture[end..])
}

/// A small `message.created` delivery whose `message_id` and `org_id` are `id`.
pub fn message(id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","data":{{"message_id":"{id}","body":"hello"}},"org_id":"{id}"}}"#
    ))
}

/// The `x-periskope-signature` of `body` under `key`.
pub fn sign(key: &str, body: &[u8]) -> String {
    periskope_webhook::testing::signature(key, body)
}

// ---------------------------------------------------------------------------------------------
// The handler and the server

/// One call of the inner handler.
#[derive(Clone, Debug)]
pub struct Observed {
    /// `None` when the request carried no `WebhookEvent`.
    pub kind: Option<EventKind>,
    pub name: Option<String>,
    pub is_typed: bool,
    pub data_error_path: Option<String>,
    /// The bytes read from the request body the layer handed on.
    pub body: Bytes,
    pub raw_body: Option<Bytes>,
    /// Whether `RawBody` and `WebhookEvent::body` are the same buffer (same pointer and length).
    pub raw_shares_event_body: bool,
    pub event_body: Option<Bytes>,
    /// `Some` when `DeliveryMetadata` was present: the key (index, id) and the body length.
    pub metadata: Option<(Option<(usize, String)>, usize)>,
}

/// Every call of the inner handler, in order.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Observed>>>);

impl Recorder {
    pub fn calls(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Observed> {
        self.0.lock().unwrap().clone()
    }

    pub fn take(&self) -> Vec<Observed> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The single call recorded since the last `take`, which must be the only one.
    #[track_caller]
    pub fn one(&self) -> Observed {
        let mut all = self.take();
        assert_eq!(all.len(), 1, "expected exactly one handler call, got {all:#?}");
        all.pop().unwrap()
    }

    #[track_caller]
    pub fn assert_not_called(&self, what: &str) {
        let seen = self.take();
        assert!(
            seen.is_empty(),
            "{what}: the handler must not be called, it got {:?}",
            seen.iter()
                .map(|seen| String::from_utf8_lossy(&seen.body[..seen.body.len().min(200)]))
                .collect::<Vec<_>>()
        );
    }

    /// The handler was called exactly once since the last `take`, with exactly `body`.
    #[track_caller]
    pub fn assert_called_once_with(&self, what: &str, body: &[u8]) {
        let seen = self.take();
        assert_eq!(seen.len(), 1, "{what}: expected exactly one handler call, got {}", seen.len());
        assert!(seen[0].body == body, "{what}: the handler got other bytes than the ones signed");
    }
}

/// The inner handler of every stack: records what it saw and answers 200 `{"code":"handled"}`.
pub async fn record<B>(recorder: Recorder, request: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = request.into_parts();
    let body = body.collect().await.expect("the forwarded body reads").to_bytes();
    let event = parts.extensions.get::<WebhookEvent>();
    let raw = parts.extensions.get::<RawBody>();
    let metadata = parts.extensions.get::<DeliveryMetadata>();
    let observed = Observed {
        kind: event.map(WebhookEvent::kind),
        name: event.map(|e| e.name().to_owned()),
        is_typed: event.is_some_and(|e| e.event().is_typed()),
        data_error_path: event.and_then(|e| e.event().data_error().map(|error| error.path().to_owned())),
        body,
        raw_body: raw.map(|raw| raw.0.clone()),
        raw_shares_event_body: match (raw, event) {
            (Some(raw), Some(event)) => {
                raw.0.as_ptr() == event.body().as_ptr() && raw.0.len() == event.body().len()
            }
            _ => false,
        },
        event_body: event.map(|e| e.body().clone()),
        metadata: metadata
            .map(|meta| (meta.key.as_ref().map(|key| (key.index(), key.id().to_owned())), meta.body_len)),
    };
    recorder.0.lock().unwrap().push(observed);
    let mut response = Response::new(Full::new(Bytes::from_static(br#"{"code":"handled"}"#)));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert("x-handler", HeaderValue::from_static("yes"));
    response
}

/// `POST PATH` answered by [`record`], behind `layer`, as an axum router (to stack more layers).
pub fn router(layer: PeriskopeWebhookLayer, recorder: Recorder) -> Router {
    Router::new()
        .route(PATH, post(move |request: axum::extract::Request| record(recorder, request)))
        .layer(layer)
}

/// [`record`] behind `layer`, served by `stack`: the layer wraps a plain tower service, which
/// the hyper stack calls with hyper's own request bodies.
pub async fn start(stack: Stack, layer: PeriskopeWebhookLayer, recorder: Recorder) -> Server {
    let inner = service_fn(move |request: Request<Full<Bytes>>| {
        let recorder = recorder.clone();
        async move { Ok::<_, Infallible>(record(recorder, request).await) }
    });
    serve(stack, layer.layer(inner)).await
}

// ---------------------------------------------------------------------------------------------
// A well-behaved HTTP client

/// A fresh HTTP/1 client, with its own connection pool.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn full(body: impl Into<Bytes>) -> ClientBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

/// A POST of `body` with one `x-periskope-signature` header per item of `signatures`.
pub fn post_with(url: &str, body: impl Into<Bytes>, signatures: &[&[u8]]) -> Request<ClientBody> {
    let mut request =
        Request::builder().method(Method::POST).uri(url).header("content-type", "application/json");
    for signature in signatures {
        request =
            request.header(SIGNATURE_HEADER, HeaderValue::from_bytes(signature).expect("a header value"));
    }
    request.body(full(body)).expect("request")
}

/// A POST of `body` signed with `key`.
pub fn signed(url: &str, key: &str, body: impl Into<Bytes>) -> Request<ClientBody> {
    let body = body.into();
    let signature = sign(key, &body);
    post_with(url, body, &[signature.as_bytes()])
}

/// The `code` of a JSON reply body, or `""`.
fn json_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|json| json["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `code` of a JSON reply, or `""`.
    pub fn code(&self) -> String {
        json_code(&self.body)
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("JSON reply ({error}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the status and the JSON `code`.
    #[track_caller]
    pub fn assert(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "reply body: {:?}",
            String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
        );
    }
}

/// Sends `request` and reads the whole reply, bounded in time.
pub async fn try_send(client: &HttpClient, request: Request<ClientBody>) -> Result<Reply, BoxError> {
    let response = within("response head", client.request(request)).await?;
    let (parts, body) = response.into_parts();
    let body = within("response body", body.collect()).await?.to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

pub async fn send(client: &HttpClient, request: Request<ClientBody>) -> Reply {
    try_send(client, request).await.expect("the request gets a response")
}

/// A valid delivery to `server` gets 200 and reaches the handler once, with its bytes.
pub async fn assert_still_serves(server: &Server, recorder: &Recorder, what: &str) {
    let body = message(&format!("still-serving-after-{what}"));
    send(&client(), signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "handled");
    recorder.assert_called_once_with(what, &body);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1 over TCP

pub async fn connect(addr: SocketAddr) -> TcpStream {
    within("connect", TcpStream::connect(addr)).await.expect("connect to the server")
}

/// The request head `POST PATH` with `extra` header lines (each ending in CRLF) and the blank
/// line.
pub fn head(addr: SocketAddr, extra: &str) -> String {
    format!("POST {PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{extra}\r\n")
}

pub async fn write(stream: &mut TcpStream, bytes: &[u8]) {
    within("write", stream.write_all(bytes)).await.expect("write to the server");
}

/// One HTTP/1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn code(&self) -> String {
        json_code(&self.body)
    }

    #[track_caller]
    pub fn assert(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code().as_str()), (status, code), "{self:?}");
    }
}

/// What reading a response off a raw connection gave.
#[derive(Debug)]
pub enum Read {
    Response(RawResponse),
    /// The peer closed (or reset) the connection before a response began.
    Closed,
    /// Nothing arrived within the wait.
    Silent,
}

/// Reads one response (head and `Content-Length` body) from `stream`, keeping whatever follows
/// it in `buf`. Waits at most `wait` for its first byte, then [`STEP`] for the rest.
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Read {
    let mut chunk = [0u8; 8192];
    let mut first = true;
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let limit = if first && buf.is_empty() { wait } else { STEP };
        first = false;
        match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
            Err(_) if buf.is_empty() => return Read::Silent,
            Err(_) => panic!("timed out in a response head: {:?}", String::from_utf8_lossy(buf)),
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return Read::Closed,
            Ok(Ok(0)) | Ok(Err(_)) => panic!("connection ended in a response head: {buf:?}"),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {head:?}"));
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match within("response body", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => panic!("connection ended in a response body: {head}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Read::Response(RawResponse { status, head, body })
}

/// Reads one response that must come within [`STEP`].
pub async fn expect_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> RawResponse {
    match read_response(stream, buf, STEP).await {
        Read::Response(response) => response,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Whether the peer closes the connection (EOF or reset) within [`STEP`], with nothing more sent.
pub async fn closes(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    matches!(within("close", stream.read(&mut chunk)).await, Ok(0) | Err(_))
}

// ---------------------------------------------------------------------------------------------
// A request body fed through a channel

/// A body whose chunks (or error) are pushed through a channel; it ends when the sender drops.
/// `exact` sets a size hint, which the client turns into a `Content-Length`.
pub struct ChannelBody {
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>,
    exact: Option<u64>,
}

pub fn channel_body(exact: Option<u64>) -> (tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>, ClientBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    (sender, ChannelBody { receiver, exact }.boxed())
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.receiver.poll_recv(cx).map(|item| item.map(|chunk| chunk.map(http_body::Frame::data)))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.exact.map(http_body::SizeHint::with_exact).unwrap_or_default()
    }
}

/// A POST of a streamed body with the given signature.
pub fn streamed(url: &str, body: ClientBody, signature: &str) -> Request<ClientBody> {
    Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .expect("request")
}
