//! Runs the server examples (`axum`, `hyper`, `tonic`) as their users would, and talks to them
//! over loopback HTTP: every signed delivery fixture gets 200 and one `-> typed` line, a forged
//! signature gets 401 and a rejection line but no delivery line, and the tonic example answers
//! the gRPC health check on the same port. The `otel` example exports a delivery's trace over
//! OTLP to a collector played here.
//!
//! The binaries are the ones cargo builds next to this test (`target/<profile>/examples/`).

#[path = "common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::event::Event;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};
use process::{Running as Example, WAIT, example_binary};

const KEY: &str = "peri_examples-test-0000-4000-8000-000000000000";

/// Starts the example `name` on a free port, verifying with [`KEY`].
fn start(name: &str) -> Example {
    let binary = example_binary(Path::new(env!("CARGO_MANIFEST_DIR")), name);
    Example::start(name, Command::new(binary).env("ADDR", "127.0.0.1:0").env("PERISKOPE_SIGNING_KEY", KEY))
}

/// Every delivery fixture: the envelopes and the field-observed variants.
fn deliveries() -> Vec<(String, Vec<u8>)> {
    process::delivery_fixtures(Path::new(env!("CARGO_MANIFEST_DIR")))
        .into_iter()
        .map(|path| {
            let body = std::fs::read(&path).expect("a readable fixture");
            let name = Event::from_slice(&body).expect("a delivery fixture decodes").name().to_owned();
            (name, body)
        })
        .collect()
}

struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
}

impl Sender {
    fn new(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Sender { client, url: format!("http://{addr}/webhooks/periskope") }
    }

    /// POSTs `body` signed by `key`, as Periskope does; returns the status.
    async fn post(&self, body: &[u8], key: &str) -> StatusCode {
        let signature = sign(&SigningKey::new(key).expect("a non-empty key"), body);
        let request = Request::post(&self.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("a valid request");
        let response = tokio::time::timeout(WAIT, self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("no response from {} within {WAIT:?}", self.url))
            .unwrap_or_else(|error| panic!("POST {} failed: {error:?}", self.url));
        response.status()
    }
}

/// What every server example must do with signed and forged deliveries.
async fn exercise(example: &Example) {
    let sender = Sender::new(example.addr);

    for (name, body) in deliveries() {
        assert_eq!(sender.post(&body, KEY).await, StatusCode::OK, "{}: {name}", example.name);
        let line = example.next_line();
        assert!(
            line.starts_with(&format!("delivery {name} ")) && line.ends_with(" -> typed"),
            "{}: expected a typed {name} line, got {line:?}",
            example.name
        );
        assert_eq!(
            line,
            periskope_webhook::redact::mask_phone_digits(&line),
            "{}: a phone number in a log line",
            example.name
        );
    }

    let (name, body) = deliveries().swap_remove(0);
    let forged = sender.post(&body, "peri_not-the-key").await;
    assert_eq!(forged, StatusCode::UNAUTHORIZED, "{}: forged {name}", example.name);
    assert_eq!(example.next_line(), "rejected 401 signature_mismatch", "{}", example.name);
}

/// Stops the example and checks that the forged delivery printed nothing after its rejection.
fn assert_nothing_more(example: Example) {
    let name = example.name.clone();
    let rest = example.stop();
    assert!(rest.is_empty(), "{name}: unexpected output {rest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_example() {
    let example = start("axum");
    exercise(&example).await;
    assert_nothing_more(example);
}

#[tokio::test(flavor = "multi_thread")]
async fn hyper_example() {
    let example = start("hyper");
    exercise(&example).await;
    assert_nothing_more(example);
}

#[tokio::test(flavor = "multi_thread")]
async fn tonic_example() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let example = start("tonic");
    let hint = example.next_line();
    assert!(
        hint.contains(&format!("grpcurl -plaintext {} grpc.health.v1.Health/Check", example.addr)),
        "{hint:?}"
    );

    exercise(&example).await;

    // The gRPC health service answers on the same port as the webhook route.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", example.addr))
        .expect("a valid URI")
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .expect("a gRPC connection to the tonic example");
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("a health check answer")
        .into_inner();
    assert_eq!(response.status, ServingStatus::Serving as i32);

    assert_nothing_more(example);
}

/// The `otel` example exports the delivery's span, in the trace of the request's
/// `traceparent`, and both attempts of its job (the first fails) over OTLP/HTTP to
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: here a collector that keeps what it receives.
#[tokio::test(flavor = "multi_thread")]
async fn otel_example() {
    use std::sync::{Arc, Mutex};

    const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let collector = {
        let received = Arc::clone(&received);
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| async move {
                received.lock().unwrap().extend_from_slice(&body);
                // An empty `ExportTraceServiceResponse`: everything accepted.
                ([(header::CONTENT_TYPE, "application/x-protobuf")], Bytes::new())
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("periskope-otel-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = example_binary(Path::new(env!("CARGO_MANIFEST_DIR")), "otel");
    let example = Example::start(
        "otel",
        Command::new(binary)
            .env("ADDR", "127.0.0.1:0")
            .env("PERISKOPE_SIGNING_KEY", KEY)
            .env("PERISKOPE_INBOX", dir.join("inbox.db"))
            .env("HANDLER_FAIL_FIRST", "1")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    );

    let body = br#"{"event":"message.created","data":{"message_id":"true_919999912345@c.us_3EB0A1","chat_id":"919999912345@c.us","body":"hello"},"org_id":"org-1"}"#;
    let signature = sign(&SigningKey::new(KEY).expect("a non-empty key"), body);
    let request = Request::post(format!("http://{}/webhooks/periskope", example.addr))
        .header(header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("traceparent", format!("00-{INCOMING_TRACE}-00f067aa0ba902b7-01"))
        .body(Full::new(Bytes::from_static(body)))
        .expect("a valid request");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response =
        tokio::time::timeout(WAIT, client.request(request)).await.expect("an answer in time").unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(example.next_line(), "attempt 1 message.created");
    assert_eq!(example.next_line(), "attempt 2 message.created");

    // OTLP's protobuf holds span names as plain strings and the trace id as its 16 bytes.
    let trace_id: Vec<u8> =
        (0..16).map(|at| u8::from_str_radix(&INCOMING_TRACE[2 * at..2 * at + 2], 16).unwrap()).collect();
    let count =
        |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).filter(|window| *window == needle).count();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let exported = received.lock().unwrap().clone();
        let complete = count(&exported, b"periskope.delivery") == 1
            && count(&exported, b"periskope.attempt") == 2
            && count(&exported, b"crm.sync") == 2;
        if complete {
            assert!(
                count(&exported, &trace_id) >= 3,
                "the delivery and the first attempt in the request's trace"
            );
            assert_eq!(count(&exported, b"919999912345"), 0, "an exported value holds the phone number");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the spans were not all exported within {WAIT:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rest = example.stop();
    assert!(rest.is_empty(), "otel: unexpected output {rest:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
