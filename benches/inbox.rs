//! Acknowledged deliveries per second and time to the `200`, over loopback HTTP, for the inbox
//! against the layer with a no-op handler, in the same run.
//!
//! `cargo bench --bench inbox` (add `--profile release` to skip fat LTO). 64 concurrent clients,
//! each on its own keep-alive connection, POST a signed 1.8 KB `message.created` (each with its
//! own message id, so none is a duplicate) to: the layer with a no-op handler; the layer with
//! the inbox acceptor on the embedded SQLite store; the same on PostgreSQL (a throw-away cluster
//! on a free port, skipped when PostgreSQL 15 is not installed). Each setup runs for
//! `INBOX_BENCH_SECS` seconds (default 5), twice, interleaved; the table gives the better round.
//! Under `cargo test` (`--bench` absent) every setup runs for a few hundred requests, to check
//! that the benchmark works.
//!
//! Clients and server share the machine's cores, so the figures are for comparison within one
//! run, not absolute capacities.

#[allow(dead_code)] // Only the cluster and its databases are used.
#[path = "../tests/common/postgres.rs"]
mod postgres;
#[allow(dead_code)] // The bodies are shared; this benchmark uses one of them.
mod support;
#[path = "support/unique.rs"]
mod unique;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::PeriskopeWebhookLayer;
use periskope_webhook::inbox::{Inbox, InboxStore, PostgresStore, SqliteStore};
use periskope_webhook::signature::SIGNATURE_HEADER;
use tower::Layer;

use crate::unique::UniqueMessages;

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
const PATH: &str = "/webhooks/periskope";
const CLIENTS: usize = 64;

/// What one setup achieved in one round.
struct Round {
    acknowledged: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Round {
    fn per_second(&self) -> f64 {
        self.acknowledged as f64 / self.elapsed.as_secs_f64()
    }
}

async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}{PATH}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// 64 clients post for `duration`, or `requests` deliveries in all when given.
async fn load(url: &str, bodies: &Arc<UniqueMessages>, duration: Duration, requests: Option<usize>) -> Round {
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, bodies, sent) = (url.to_owned(), Arc::clone(bodies), Arc::clone(&sent));
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                let mut latencies = Vec::new();
                loop {
                    let n = sent.fetch_add(1, Ordering::Relaxed) as usize;
                    let done = match requests {
                        Some(requests) => n >= requests,
                        None => started.elapsed() >= duration,
                    };
                    if done {
                        return latencies;
                    }
                    let body = bodies.next();
                    let signature = periskope_webhook::testing::signature(KEY, &body);
                    let request = Request::post(&url)
                        .header("content-type", "application/json")
                        .header(SIGNATURE_HEADER, signature)
                        .body(Full::new(body))
                        .expect("request");
                    let sent_at = Instant::now();
                    let response = client.request(request).await.expect("an answer");
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    assert_eq!(status, StatusCode::OK, "the server refused a delivery");
                    latencies.push(sent_at.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.expect("a client"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at =
        |quantile: f64| latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)];
    Round { acknowledged: latencies.len(), elapsed, p50: at(0.5), p99: at(0.99) }
}

fn inbox_app<St: InboxStore>(store: St) -> Router {
    Router::new().route_service(PATH, PeriskopeWebhookLayer::new(KEY).layer(Inbox::new(store).acceptor()))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let seconds = std::env::var("INBOX_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let (duration, requests, rounds) =
        if benchmarking { (Duration::from_secs(seconds), None, 2) } else { (Duration::ZERO, Some(300), 1) };
    let bodies = Arc::new(UniqueMessages::new());

    let dir = std::env::temp_dir().join(format!("periskope-inbox-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let sqlite = SqliteStore::open(dir.join("inbox.db")).expect("the embedded inbox");
    let database = postgres::cluster().map(postgres::Cluster::database);
    let postgres = match &database {
        Some(database) => Some(PostgresStore::connect(&database.url()).await.expect("the PostgreSQL inbox")),
        None => None,
    };

    let mut setups = vec![
        (
            "layer + no-op handler",
            serve(Router::new().route(PATH, post(|| async { "ok" })).layer(PeriskopeWebhookLayer::new(KEY)))
                .await,
        ),
        ("inbox, embedded SQLite", serve(inbox_app(sqlite.clone())).await),
    ];
    if let Some(store) = postgres.clone() {
        setups.push(("inbox, PostgreSQL", serve(inbox_app(store)).await));
    }
    let mut best: Vec<Option<Round>> = setups.iter().map(|_| None).collect();
    for _ in 0..rounds {
        for (index, (_, (url, _))) in setups.iter().enumerate() {
            let round = load(url, &bodies, duration, requests).await;
            if best[index].as_ref().is_none_or(|best| round.per_second() > best.per_second()) {
                best[index] = Some(round);
            }
        }
    }

    let body_len = bodies.next().len();
    println!("{CLIENTS} clients, {body_len}-byte message.created, loopback HTTP/1.1");
    println!("| setup | acknowledged/s | p50 to 200 | p99 to 200 |");
    println!("|---|---|---|---|");
    for ((name, _), round) in setups.iter().zip(&best) {
        let round = round.as_ref().expect("every setup ran");
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms |",
            round.per_second(),
            round.p50.as_secs_f64() * 1e3,
            round.p99.as_secs_f64() * 1e3
        );
    }
    // Every acknowledged delivery is in the stores.
    let stored = sqlite.stats(std::time::SystemTime::now()).await.expect("stats").pending;
    println!("embedded store holds {stored} jobs");
    for (_, (_, task)) in setups {
        task.abort();
    }
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}
