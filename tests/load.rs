//! A bounded load and fault test on loopback.
//!
//! The server (axum, `PeriskopeWebhookLayer::body_limit(64 KiB)`) runs in a child process, this
//! test binary re-executed with `PERISKOPE_LOAD_SERVER=1` so that only `load_server_process`
//! runs in it, so that its memory can be read from `/proc/<pid>/status`. Concurrent clients
//! (tokio tasks, each with its own connections) send a mix of valid deliveries (every one
//! unique), forged ones, oversized ones (declared and streamed) and requests cut midway over
//! raw TCP. Then:
//! - every valid delivery reached the handler exactly once, and nothing else did;
//! - the server still answers normally;
//! - its peak RSS (`VmHWM`) stays below `limit × clients + baseline`, where the baseline is its
//!   RSS after start-up and one delivery plus [`BASELINE_ALLOWANCE`] (runtime, connection
//!   buffers, allocator slack).
//!
//! The default run is small enough for CI in a debug build. A bigger one, printing the figures:
//!
//! ```text
//! LOAD_REQUESTS=200000 LOAD_CLIENTS=256 cargo test --release --test load -- --nocapture
//! ```
//!
//! `LOAD_REQUESTS` (default 2,560), `LOAD_CLIENTS` (default 64, at least 64) and
//! `LOAD_SECONDS` (the bound on the whole run, default 60) tune it. Linux only (`/proc`).
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use common::*;
use http::StatusCode;
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use tokio::io::AsyncWriteExt;

/// Set in the child's environment: run the server instead of the test.
const CHILD_ENV: &str = "PERISKOPE_LOAD_SERVER";
/// The line the child prints once it listens: this prefix, then the port.
const READY: &str = "PERISKOPE_LOAD_PORT=";
/// The server's body limit.
const LIMIT: usize = 64 * 1024;
/// Added to the measured idle RSS to make the stated baseline.
const BASELINE_ALLOWANCE: u64 = 16 * 1024 * 1024;
/// The child exits on its own after this long, whatever happens to the parent.
const CHILD_LIFETIME: Duration = Duration::from_secs(900);

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------------
// The server, in the child process

/// In the child process: serves the webhook until stdin closes. In the parent: does nothing.
#[test]
fn load_server_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // The parent holds our stdin: when it ends (normally or not), so do we.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        eprintln!("load server: lifetime over, exiting");
        std::process::exit(3);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(serve_until_killed());
    std::process::exit(0);
}

/// What reached the handler. Valid deliveries are counted in a table allocated at start-up (so
/// that the tracking does not grow with the run and blur the memory figure); anything else is
/// kept by name.
struct Seen {
    /// Calls per slot, for the `org_id`s `valid-<slot>`.
    slots: Vec<AtomicU32>,
    /// Calls per other `org_id` (the warm-up and the final delivery; anything else is a bug).
    others: Mutex<HashMap<String, u32>>,
}

async fn serve_until_killed() {
    let slots = env_number("LOAD_SLOTS", 0) as usize;
    let seen =
        Arc::new(Seen { slots: (0..slots).map(|_| AtomicU32::new(0)).collect(), others: Mutex::default() });
    let handled = seen.clone();
    let app = Router::new()
        .route(
            PATH,
            post(move |Extension(delivery): Extension<WebhookEvent>| {
                let handled = handled.clone();
                async move {
                    let id = delivery.event().org_id.as_deref().unwrap_or("<none>");
                    let slot = id.strip_prefix("valid-").and_then(|slot| slot.parse::<usize>().ok());
                    match slot.and_then(|slot| handled.slots.get(slot)) {
                        Some(count) => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        None => *handled.others.lock().unwrap().entry(id.to_owned()).or_default() += 1,
                    }
                    Json(serde_json::json!({ "code": "handled" }))
                }
            }),
        )
        .layer(PeriskopeWebhookLayer::new(KEY).body_limit(LIMIT))
        // Outside the layer: what the handler saw, one digit (capped at 9) per slot.
        .route(
            "/stats",
            get(move || async move {
                let slots: String = seen
                    .slots
                    .iter()
                    .map(|count| char::from(b'0' + count.load(Ordering::Relaxed).min(9) as u8))
                    .collect();
                let others = seen.others.lock().unwrap().clone();
                Json(serde_json::json!({ "slots": slots, "others": others }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{READY}{port}").expect("stdout");
        stdout.flush().expect("stdout");
    }
    axum::serve(listener, app).await.expect("axum serves");
}

// ---------------------------------------------------------------------------------------------
// The parent

/// The child process; killed and reaped when dropped.
struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    fn spawn(slots: usize) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["load_server_process", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env("LOAD_SLOTS", slots.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the server process");
        let stdout = child.stdout.take().expect("child stdout");
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness may have written `test load_server_process ... ` before it.
                if let Some(at) = line.find(READY) {
                    let _ = port_sender.send(line[at + READY.len()..].trim().parse::<u16>().expect("a port"));
                }
            }
        });
        let mut process = ServerProcess { child, port: 0 };
        process.port =
            port_receiver.recv_timeout(Duration::from_secs(60)).expect("the server process listens");
        process
    }

    /// A field of `/proc/<pid>/status`, in bytes (`VmRSS`, `VmHWM`).
    fn memory(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let line = status.lines().find(|line| line.starts_with(&format!("{field}:"))).expect(field);
        let kib: u64 =
            line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number of kB");
        kib * 1024
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Valid,
    Forged,
    /// Over the limit, with its `Content-Length`.
    OversizedDeclared,
    /// Over the limit, chunked: exactly `limit + 1` bytes, then the body stays open.
    OversizedStreamed,
    /// Headers and half of a `Content-Length` body over raw TCP, then the socket is dropped.
    Disconnected,
}

/// The fixed mix: 6 valid, 1 forged, 1 oversized declared, 1 oversized streamed, 1 cut, of 10.
fn kind_of(client: usize, request: usize) -> Kind {
    match (client + request) % 10 {
        0..=5 => Kind::Valid,
        6 => Kind::Forged,
        7 => Kind::OversizedDeclared,
        8 => Kind::OversizedStreamed,
        _ => Kind::Disconnected,
    }
}

/// How each request ended, as the client saw it.
#[derive(Debug, Default)]
struct Tally {
    valid_slots: Vec<usize>,
    by_outcome: HashMap<(Kind, String), u64>,
}

impl Tally {
    fn note(&mut self, kind: Kind, outcome: impl Into<String>) {
        *self.by_outcome.entry((kind, outcome.into())).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.valid_slots.extend(other.valid_slots);
        for (key, count) in other.by_outcome {
            *self.by_outcome.entry(key).or_default() += count;
        }
    }
}

fn outcome(result: Result<Reply, BoxError>) -> String {
    match result {
        Ok(reply) => format!("{} {}", reply.status.as_u16(), reply.code()),
        Err(_) => "connection error".to_owned(),
    }
}

/// A `message.created` delivery of `len` bytes or more with `org_id` `id`.
fn padded(id: &str, len: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","data":{{"message_id":"{id}","body":"{}"}},"org_id":"{id}"}}"#,
        "x".repeat(len)
    ))
}

async fn run_client(index: usize, requests: usize, url: String, fixtures: Arc<Vec<String>>) -> Tally {
    let client = client();
    let addr: std::net::SocketAddr =
        url.trim_start_matches("http://").trim_end_matches(PATH).parse().expect("addr");
    let mut tally = Tally::default();
    for request in 0..requests {
        let kind = kind_of(index, request);
        match kind {
            Kind::Valid => {
                let slot = index * requests + request;
                let fixture = &fixtures[(index + request) % fixtures.len()];
                let body = Bytes::from(with_org_id(fixture, &format!("valid-{slot}")));
                let outcome = outcome(try_send(&client, signed(&url, KEY, body)).await);
                assert_eq!(outcome, "200 handled", "valid delivery {slot}");
                tally.valid_slots.push(slot);
                tally.note(kind, outcome);
            }
            Kind::Forged => {
                let body = message(&format!("forged-{index}-{request}"));
                let forged = sign(OTHER_KEY, &body);
                let outcome = outcome(try_send(&client, post_with(&url, body, &[forged.as_bytes()])).await);
                assert_eq!(outcome, "401 signature_mismatch");
                tally.note(kind, outcome);
            }
            Kind::OversizedDeclared => {
                let body = padded(&format!("big-{index}-{request}"), LIMIT + 16 * 1024);
                // Correctly signed: only the limit stands between it and the handler. The server
                // answers from the head and then closes the connection (the body is unread), so
                // this goes on a connection of its own, and a client still writing may see the
                // connection go instead of the 413.
                let outcome = outcome(try_send(&common::client(), signed(&url, KEY, body)).await);
                assert!(
                    matches!(outcome.as_str(), "413 payload_too_large" | "connection error"),
                    "{outcome}"
                );
                tally.note(kind, outcome);
            }
            Kind::OversizedStreamed => {
                // Chunked over raw TCP, exactly limit + 1 bytes of data and no last chunk: the
                // answer cannot wait for the end of the body.
                let body = padded(&format!("stream-{index}-{request}"), LIMIT + 1024);
                let mut stream = connect(addr).await;
                let head = head(
                    addr,
                    &format!("x-periskope-signature: {}\r\ntransfer-encoding: chunked\r\n", sign(KEY, &body)),
                );
                let mut wire = head.into_bytes();
                for chunk in body[..LIMIT + 1].chunks(16 * 1024) {
                    wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(b"\r\n");
                }
                within("write", stream.write_all(&wire)).await.expect("write the chunks");
                let response = expect_response(&mut stream, &mut Vec::new()).await;
                let outcome = format!("{} {}", response.status, response.code());
                assert_eq!(outcome, "413 payload_too_large");
                tally.note(kind, outcome);
            }
            Kind::Disconnected => {
                let body = message(&format!("cut-{index}-{request}"));
                let mut stream = connect(addr).await;
                let head = head(
                    addr,
                    &format!(
                        "x-periskope-signature: {}\r\ncontent-length: {}\r\n",
                        sign(KEY, &body),
                        body.len()
                    ),
                );
                within("write", stream.write_all(head.as_bytes())).await.expect("write head");
                within("write", stream.write_all(&body[..body.len() / 2])).await.expect("write half");
                drop(stream);
                tally.note(kind, "dropped");
            }
        }
    }
    tally
}

#[test]
fn load_and_faults() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let clients = env_number("LOAD_CLIENTS", 64).max(64) as usize;
    let requests = env_number("LOAD_REQUESTS", 2560).max(clients as u64) as usize;
    let per_client = requests.div_ceil(clients);
    let total = per_client * clients;
    let bound = Duration::from_secs(env_number("LOAD_SECONDS", 60));

    let mut server = ServerProcess::spawn(total);
    let url = format!("http://127.0.0.1:{}{PATH}", server.port);
    let stats_url = format!("http://127.0.0.1:{}/stats", server.port);
    let fixtures: Arc<Vec<String>> = Arc::new(
        envelope_fixture_names()
            .iter()
            .map(|name| String::from_utf8(fixture(name).to_vec()).expect("UTF-8 fixture"))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");

    let (tally, elapsed, idle, peak, stats) = runtime.block_on(async {
        // Warm up with one delivery, then take the idle figure.
        let warm = Bytes::from(with_org_id(&fixtures[0], "warm-up"));
        send(&client(), signed(&url, KEY, warm)).await.assert(StatusCode::OK, "handled");
        let idle = server.memory("VmHWM");

        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..clients {
            tasks.spawn(run_client(index, per_client, url.clone(), fixtures.clone()));
        }
        let mut tally = Tally::default();
        tokio::time::timeout(bound, async {
            while let Some(joined) = tasks.join_next().await {
                tally.merge(joined.expect("a client task"));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the load did not finish within {bound:?}"));
        let elapsed = started.elapsed();

        // The server answers normally afterwards.
        let after = Bytes::from(with_org_id(&fixtures[1], "after-load"));
        send(&client(), signed(&url, KEY, after)).await.assert(StatusCode::OK, "handled");
        let forged = message("after-load-forged");
        let reply = send(&client(), post_with(&url, forged, &[sign(OTHER_KEY, b"x").as_bytes()])).await;
        reply.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
        // The peak, before the statistics are fetched (they are the test's, not the server's).
        let peak = server.memory("VmHWM");
        let stats = send(&client(), http::Request::get(&stats_url).body(full(Bytes::new())).unwrap()).await;
        let stats: serde_json::Value = serde_json::from_slice(&stats.body).expect("stats JSON");
        (tally, elapsed, idle, peak, stats)
    });
    assert!(server.is_running(), "the server process is still up");
    drop(server);

    // Every valid delivery exactly once, nothing else.
    let slots = stats["slots"].as_str().expect("slots").as_bytes();
    assert_eq!(slots.len(), total);
    let mut expected = vec![b'0'; total];
    for slot in &tally.valid_slots {
        expected[*slot] = b'1';
    }
    let wrong: Vec<_> = (0..total).filter(|slot| slots[*slot] != expected[*slot]).collect();
    assert!(
        wrong.is_empty(),
        "{} valid deliveries not handled exactly once, e.g. {:?}",
        wrong.len(),
        wrong.iter().take(5).map(|slot| (slot, char::from(slots[*slot]))).collect::<Vec<_>>()
    );
    let others = stats["others"].as_object().expect("others");
    let named: Vec<_> = others.iter().map(|(id, count)| (id.as_str(), count.as_u64())).collect();
    assert_eq!(named, [("after-load", Some(1)), ("warm-up", Some(1))], "only the named deliveries");
    let counted: u64 = tally.by_outcome.values().sum();
    assert_eq!(counted as usize, total);

    let baseline = idle + BASELINE_ALLOWANCE;
    let bound_bytes = LIMIT as u64 * clients as u64 + baseline;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut outcomes: Vec<_> = tally.by_outcome.iter().collect();
    outcomes.sort_by_key(|((kind, outcome), _)| (format!("{kind:?}"), outcome.clone()));
    println!(
        "load: {total} requests ({} valid) from {clients} clients in {:.2} s = {:.0} requests/s ({} build)",
        tally.valid_slots.len(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );
    for ((kind, outcome), count) in outcomes {
        println!("  {kind:?}: {outcome}: {count}");
    }
    println!(
        "memory: peak RSS (VmHWM) {:.1} MiB; baseline {:.1} MiB = idle {:.1} MiB + allowance {:.0} MiB; \
         bound = {} KiB limit x {clients} clients + baseline = {:.1} MiB",
        mib(peak),
        mib(baseline),
        mib(idle),
        mib(BASELINE_ALLOWANCE),
        LIMIT / 1024,
        mib(bound_bytes),
    );
    assert!(peak < bound_bytes, "peak RSS {:.1} MiB over the bound {:.1} MiB", mib(peak), mib(bound_bytes));
}
