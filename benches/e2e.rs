//! End to end over loopback: three axum routes receiving the same signed 1.8 KB
//! message.created, in one run.
//!
//! - `bare`: the body as `Bytes`, nothing checked;
//! - `by hand`: the HMAC checked by hand, then the body parsed as `Json<Value>`;
//! - `layer`: `PeriskopeWebhookLayer` and an `Extension<WebhookEvent>` handler.
//!
//! `cargo bench --bench e2e`. The server is this program started again with `--serve`, pinned
//! to CPU 0 with `taskset`; the load generator (64 keep-alive HTTP/1 connections) runs here,
//! pinned to CPU 1. Rounds interleave the routes; each lasts `E2E_SECONDS` (default 2 s), and
//! `E2E_ROUNDS` (default 3) rounds run. Server CPU time comes from its `/proc/self/stat`. Only
//! 127.0.0.1 is used, and the server exits when its standard input closes. Without `--bench`
//! (as `cargo test --benches` runs it) one short round checks that everything works.

#[allow(dead_code)] // The bodies are shared; this benchmark uses one of them.
mod support;

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Extension;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
const ROUTES: [(&str, &str); 3] = [("bare", "/bare"), ("by hand", "/by-hand"), ("layer", "/layer")];
const CONNECTIONS: usize = 64;

fn main() {
    if std::env::args().any(|arg| arg == "--serve") {
        return serve();
    }
    let measuring = std::env::args().any(|arg| arg == "--bench");
    let env =
        |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rounds, seconds) = if measuring { (env("E2E_ROUNDS", 3), env("E2E_SECONDS", 2)) } else { (1, 0) };
    let round = if measuring { Duration::from_secs(seconds) } else { Duration::from_millis(200) };
    let pinned = pin_self_to_cpu(1);
    let mut server = Server::start(pinned);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let body = Bytes::from(support::compact("message.created.envelope.json"));
    let signature = sign(&SigningKey::new(KEY).expect("non-empty"), &body);
    let results = runtime.block_on(measure(&server.addr, body.clone(), signature, rounds, round));
    server.stop();

    println!(
        "e2e: {} B message.created, {CONNECTIONS} connections, {rounds} x {} ms per route, server {}",
        body.len(),
        round.as_millis(),
        if pinned { "on CPU 0, load on CPU 1" } else { "and load unpinned (no taskset)" }
    );
    println!("route     requests/s   p50 µs   p99 µs   server CPU µs/request");
    for ((name, _), samples) in ROUTES.iter().zip(&results) {
        let best = samples.iter().max_by(|a, b| a.per_second.total_cmp(&b.per_second)).expect("a round");
        println!(
            "{name:<9} {:>10.0} {:>8.0} {:>8.0} {:>12.1}",
            best.per_second, best.p50_us, best.p99_us, best.cpu_us_per_request
        );
    }
    let rate = |index: usize| results[index].iter().map(|s| s.per_second).fold(0.0, f64::max);
    let cpu = |index: usize| results[index].iter().map(|s| s.cpu_us_per_request).fold(f64::MAX, f64::min);
    println!(
        "layer / by hand: {:.2}x requests/s; layer / bare: {:.2}x; layer adds {:.1} µs CPU over bare",
        rate(2) / rate(1),
        rate(2) / rate(0),
        cpu(2) - cpu(0)
    );
}

/// One round of one route.
struct Sample {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_request: f64,
}

async fn measure(
    addr: &str,
    body: Bytes,
    signature: String,
    rounds: u64,
    round: Duration,
) -> Vec<Vec<Sample>> {
    let mut results: Vec<Vec<Sample>> = ROUTES.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (index, (_, path)) in ROUTES.iter().enumerate() {
            let before = server_cpu_us(addr).await;
            let start = Instant::now();
            let deadline = start + round;
            let clients: Vec<_> = (0..CONNECTIONS)
                .map(|_| {
                    tokio::spawn(client(addr.to_owned(), path, body.clone(), signature.clone(), deadline))
                })
                .collect();
            let mut latencies = Vec::new();
            for client in clients {
                latencies.extend(client.await.expect("a client task"));
            }
            let elapsed = start.elapsed().as_secs_f64();
            let cpu = server_cpu_us(addr).await - before;
            latencies.sort_unstable();
            let quantile =
                |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
            results[index].push(Sample {
                per_second: latencies.len() as f64 / elapsed,
                p50_us: quantile(0.5),
                p99_us: quantile(0.99),
                cpu_us_per_request: cpu / latencies.len() as f64,
            });
        }
    }
    results
}

/// Sends requests on one connection until `deadline`; returns each one's latency.
async fn client(
    addr: String,
    path: &str,
    body: Bytes,
    signature: String,
    deadline: Instant,
) -> Vec<Duration> {
    let stream = TcpStream::connect(&addr).await.expect("connects to the server");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("a handshake");
    tokio::spawn(connection);
    let mut latencies = Vec::new();
    loop {
        let request = Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature.as_str())
            .body(Full::new(body.clone()))
            .expect("a request");
        let start = Instant::now();
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.into_body().collect().await.expect("the response body");
        latencies.push(start.elapsed());
        if Instant::now() >= deadline {
            return latencies;
        }
    }
}

async fn server_cpu_us(addr: &str) -> f64 {
    let stream = TcpStream::connect(addr).await.expect("connects to the server");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("a handshake");
    tokio::spawn(connection);
    let request =
        Request::get("/cpu").header("host", "127.0.0.1").body(Full::new(Bytes::new())).expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let text = response.into_body().collect().await.expect("a body").to_bytes();
    std::str::from_utf8(&text).expect("UTF-8").parse().expect("a number of microseconds")
}

/// Pins this process to `cpu` with `taskset`; false when that is not possible here.
fn pin_self_to_cpu(cpu: usize) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    cpus >= 2
        && Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

/// The server process; it exits when its standard input closes.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(pinned: bool) -> Server {
        let exe = std::env::current_exe().expect("this program");
        let mut command = if pinned {
            let mut command = Command::new("taskset");
            command.args(["-c", "0"]).arg(exe);
            command
        } else {
            Command::new(exe)
        };
        let mut child = command
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("the address");
        let addr = line.trim().to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "the server said {line:?}");
        Server { child, addr }
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serve() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let app = Router::new()
            .route("/bare", post(|body: Bytes| async move { black_box(body.len()).to_string() }))
            .route("/by-hand", post(by_hand))
            .route(
                "/layer",
                post(|Extension(event): Extension<WebhookEvent>| async move {
                    black_box(event.name()).to_owned()
                })
                .layer(PeriskopeWebhookLayer::new(KEY)),
            )
            .route("/cpu", get(|| async { cpu_us().to_string() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds to loopback");
        println!("{}", listener.local_addr().expect("an address"));
        // Exit when the driver closes our standard input (or dies).
        let stdin_closed = tokio::task::spawn_blocking(|| std::io::stdin().lines().count());
        tokio::select! {
            served = axum::serve(listener, app) => served.expect("serves"),
            _ = stdin_closed => {}
        }
    });
}

/// What a route written without the crate does: check the HMAC, then parse `Json<Value>`.
async fn by_hand(headers: HeaderMap, body: Bytes) -> Result<String, StatusCode> {
    let tag = headers.get(SIGNATURE_HEADER).ok_or(StatusCode::UNAUTHORIZED)?;
    let tag = decode_hex(tag.as_bytes()).ok_or(StatusCode::UNAUTHORIZED)?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).expect("any key length");
    mac.update(&body);
    mac.verify_slice(&tag).map_err(|_| StatusCode::UNAUTHORIZED)?;
    let Json(value) = Json::<Value>::from_bytes(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(black_box(value["event"].as_str().unwrap_or_default()).to_owned())
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2).map(|pair| Some(digit(*pair.first()?)? << 4 | digit(*pair.get(1)?)?)).collect()
}

/// This process's user + system CPU time in microseconds, from `/proc/self/stat`.
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces) start at field 3; utime is field 14.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports these in USER_HZ, 100 per second on every common configuration.
    ticks * 10_000
}
