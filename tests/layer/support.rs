//! The three stacks, the recording handler, the HTTP client and the bodies the cases use.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use periskope_webhook::signature::SIGNATURE_HEADER;
use periskope_webhook::{DeliveryMetadata, EventKind, PeriskopeWebhookLayer, RawBody, WebhookEvent};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

// The client side, the fixtures and the key constants are shared with the hostile, load and
// secrets suites.
pub use crate::common::{
    BoxError, ClientBody, HttpClient, KEY, OTHER_KEY, PATH, channel_body, client, fixture, fixtures_dir,
    full, streamed,
};

/// Bound on every single await on the network.
pub const STEP: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test if it takes longer than [`STEP`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Every delivery fixture: `*.envelope.json` and `field-observed.*.json`, sorted.
pub fn envelope_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .map(|entry| entry.expect("dir entry").file_name().into_string().expect("UTF-8 name"))
        .filter(|name| name.ends_with(".envelope.json") || name.starts_with("field-observed."))
        .collect();
    names.sort();
    names
}

/// The signature test vector: (key, body, expected signature).
pub fn test_vector() -> (String, Bytes, String) {
    let json: Value = serde_json::from_slice(&fixture("signature-test-vector.json")).expect("JSON");
    let text = |field: &str| json[field].as_str().unwrap_or_else(|| panic!("{field}")).to_owned();
    (text("signing_key"), Bytes::from(text("body")), text("expected_signature_hex"))
}

/// HMAC-SHA256 of `body` under `key`, lowercase hex, computed by python3's `hmac` module.
pub fn python_hmac(key: &str, body: &[u8]) -> String {
    const SCRIPT: &str = "import hmac, hashlib, sys\n\
        key = sys.argv[1].encode('utf-8')\n\
        body = sys.stdin.buffer.read()\n\
        sys.stdout.write(hmac.new(key, body, hashlib.sha256).hexdigest())\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(body).expect("write to python3");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(output.status.success(), "python3 failed: {}", String::from_utf8_lossy(&output.stderr));
    let hex = String::from_utf8(output.stdout).expect("hex");
    assert_eq!(hex.len(), 64, "{hex}");
    hex
}

/// A `message.created` delivery whose body is exactly `len` bytes.
pub fn message_of_len(len: usize) -> Bytes {
    let head = r#"{"event":"message.created","data":{"body":""#;
    let tail = r#""}}"#;
    let fill = len.checked_sub(head.len() + tail.len()).expect("long enough");
    let body = format!("{head}{}{tail}", "x".repeat(fill));
    assert_eq!(body.len(), len);
    Bytes::from(body)
}

/// A small `message.created` delivery carrying `text`.
pub fn message(text: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","data":{{"message_id":"m-{text}","body":"{text}"}}}}"#
    ))
}

// ---------------------------------------------------------------------------------------------
// What the handler saw

/// One call of the inner handler.
#[derive(Clone, Debug)]
pub struct Observed {
    /// `None` when the request carried no `WebhookEvent`.
    pub kind: Option<EventKind>,
    pub name: Option<String>,
    pub is_typed: bool,
    pub data_error_path: Option<String>,
    /// The bytes read from the (replayed) request body.
    pub body: Bytes,
    pub raw_body: Option<Bytes>,
    /// Whether `RawBody` and `WebhookEvent::body` are the same buffer (same pointer and length).
    pub raw_shares_event_body: bool,
    pub event_body: Option<Bytes>,
    /// `Some` when `DeliveryMetadata` was present: the key (index, id) and the body length.
    pub metadata: Option<(Option<(usize, String)>, usize)>,
}

#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Observed>>>);

impl Recorder {
    pub fn all(&self) -> Vec<Observed> {
        self.0.lock().unwrap().clone()
    }

    pub fn take(&self) -> Vec<Observed> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The single call recorded since the last `take`, which must be the only one.
    pub fn one(&self) -> Observed {
        let mut all = self.take();
        assert_eq!(all.len(), 1, "expected exactly one handler call, got {all:#?}");
        all.pop().unwrap()
    }

    pub fn assert_not_called(&self, what: &str) {
        let all = self.all();
        assert!(all.is_empty(), "{what}: handler must not be called, saw {all:#?}");
    }
}

/// The handler shared by the three stacks: records what it saw, answers 200 `{"code":"handled"}`.
pub async fn record<B>(recorder: Recorder, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: fmt::Debug,
{
    let (parts, body) = request.into_parts();
    let body = body.collect().await.expect("the replayed body reads").to_bytes();
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

// ---------------------------------------------------------------------------------------------
// The stacks

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// axum 0.8: `Router::route(PATH, post(handler)).layer(layer)`.
    Axum,
    /// hyper 1 via hyper-util's auto builder, the layer around a tower `service_fn`.
    Hyper,
    /// tonic 0.14's server: gRPC health and the webhook route on one port.
    Tonic,
}

/// A running server; shut down with [`Server::stop`] (or aborted when dropped).
pub struct Server {
    pub addr: SocketAddr,
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Signals shutdown and waits (bounded) for the server task to end.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Graceful shutdown waits for open connections; a few cases leave one hanging on purpose.
        if tokio::time::timeout(Duration::from_secs(1), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `stack` on 127.0.0.1 with an ephemeral port, the webhook at [`PATH`] behind `layer`.
pub async fn start(stack: Stack, layer: PeriskopeWebhookLayer, recorder: Recorder) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (shutdown, signal) = oneshot::channel::<()>();
    let signal = async move {
        let _ = signal.await;
    };
    let task = match stack {
        Stack::Axum => {
            let app: Router = Router::new()
                .route(PATH, post(move |request: axum::extract::Request| record(recorder, request)))
                .layer(layer);
            tokio::spawn(async move {
                axum::serve(listener, app).with_graceful_shutdown(signal).await.expect("axum serves");
            })
        }
        Stack::Hyper => {
            let service =
                tower::ServiceBuilder::new().layer(layer).service_fn(move |request: Request<Full<Bytes>>| {
                    let recorder = recorder.clone();
                    async move { Ok::<_, Infallible>(record(recorder, request).await) }
                });
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let mut connections = JoinSet::new();
                tokio::pin!(signal);
                loop {
                    tokio::select! {
                        () = &mut signal => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let service = TowerToHyperService::new(service.clone());
                            let builder = builder.clone();
                            connections.spawn(async move {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            });
                        }
                    }
                }
                // Dropping the set aborts the connections still open.
            })
        }
        Stack::Tonic => {
            let webhook: Router = Router::new()
                .route(PATH, post(move |request: axum::extract::Request| record(recorder, request)))
                .layer(layer);
            let (_reporter, health) = tonic_health::server::health_reporter();
            // The layer wraps the webhook route only: the health service is added afterwards.
            let routes = tonic::service::Routes::from(webhook).add_service(health);
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .accept_http1(true)
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        signal,
                    )
                    .await
                    .expect("tonic serves");
            })
        }
    };
    Server { addr, url: format!("http://{addr}{PATH}"), shutdown: Some(shutdown), task }
}

// ---------------------------------------------------------------------------------------------
// The client side

/// A POST of `body` with one `x-periskope-signature` header per item of `signatures`.
pub fn post_with(url: &str, body: impl Into<Bytes>, signatures: &[&str]) -> Request<ClientBody> {
    let mut builder =
        Request::builder().method(Method::POST).uri(url).header("content-type", "application/json");
    for signature in signatures {
        builder = builder.header(SIGNATURE_HEADER, *signature);
    }
    builder.body(full(body)).expect("request")
}

/// A POST of `body` signed with `key` (by the crate's `testing` helper).
pub fn signed(url: &str, key: &str, body: impl Into<Bytes>) -> Request<ClientBody> {
    let body = body.into();
    let signature = periskope_webhook::testing::signature(key, &body);
    post_with(url, body, &[&signature])
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("JSON reply ({error}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `code` of the JSON body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_else(|| panic!("no code in {:?}", self.body)).to_owned()
    }

    /// Asserts the status and the JSON `code`.
    #[track_caller]
    pub fn assert(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "reply body: {:?}",
            String::from_utf8_lossy(&self.body)
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
