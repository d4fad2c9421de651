//! Runs the server examples (`axum`, `hyper`, `tonic`) as their users would, and talks to them
//! over loopback HTTP: every signed delivery fixture gets 200 and one `-> typed` line, a forged
//! signature gets 401 and a rejection line but no delivery line, and the tonic example answers
//! the gRPC health check on the same port.
//!
//! The binaries are the ones cargo builds next to this test (`target/<profile>/examples/`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::event::Event;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};

mod common;

use common::examples::example_binary;

const KEY: &str = "peri_examples-test-0000-4000-8000-000000000000";
const WAIT: Duration = Duration::from_secs(10);

/// A running example; killed and reaped when dropped, also when the test fails.
struct Example {
    child: Child,
    stdout: Receiver<String>,
    name: &'static str,
    addr: SocketAddr,
}

impl Example {
    fn start(name: &'static str) -> Self {
        let binary = example_binary(name);
        let mut child = Command::new(&binary)
            .env("ADDR", "127.0.0.1:0")
            .env("PERISKOPE_SIGNING_KEY", KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut example = Example { child, stdout: receiver, name, addr: ([0, 0, 0, 0], 0).into() };
        example.addr = example.address();
        example
    }

    /// The next line the example prints, waiting at most [`WAIT`].
    fn next_line(&self) -> String {
        match self.stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{}: printed nothing for {WAIT:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => panic!("{}: stdout closed (did it exit?)", self.name),
        }
    }

    /// Reads up to the `listening on http://ADDR` line and returns the address.
    fn address(&self) -> SocketAddr {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let line = self.next_line();
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return addr
                    .parse()
                    .unwrap_or_else(|error| panic!("{}: bad address {line:?}: {error}", self.name));
            }
        }
        panic!("{}: no `listening on` line within {WAIT:?}", self.name);
    }

    /// Kills the example and returns whatever it printed that was not read yet.
    fn stop(mut self) -> Vec<String> {
        self.kill();
        // The reader thread ends at EOF, which the kill guarantees; bound the wait all the same.
        let deadline = Instant::now() + WAIT;
        let mut rest = Vec::new();
        loop {
            match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("{}: stdout still open after kill", self.name),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every delivery fixture: the envelopes and the field-observed variants.
fn deliveries() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".envelope.json")
                || (name.starts_with("field-observed.") && name.ends_with(".json"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 20, "expected the delivery fixtures, found {files:?}");
    files
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
    }

    let (name, body) = deliveries().swap_remove(0);
    let forged = sender.post(&body, "peri_not-the-key").await;
    assert_eq!(forged, StatusCode::UNAUTHORIZED, "{}: forged {name}", example.name);
    assert_eq!(example.next_line(), "rejected 401 signature_mismatch", "{}", example.name);
}

/// Stops the example and checks that the forged delivery printed nothing after its rejection.
fn assert_nothing_more(example: Example) {
    let name = example.name;
    let rest = example.stop();
    assert!(rest.is_empty(), "{name}: unexpected output {rest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_example() {
    let example = Example::start("axum");
    exercise(&example).await;
    assert_nothing_more(example);
}

#[tokio::test(flavor = "multi_thread")]
async fn hyper_example() {
    let example = Example::start("hyper");
    exercise(&example).await;
    assert_nothing_more(example);
}

#[tokio::test(flavor = "multi_thread")]
async fn tonic_example() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let example = Example::start("tonic");
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
