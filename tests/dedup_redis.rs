//! `RedisStore` against a real `redis-server`: token-owned claims, renewal for slow handlers,
//! an endless TTL, the key prefix, a server that goes away, and two replicas (two server
//! processes) sharing one Redis: under load, after a SIGKILL, and after a cancelled request.

mod common;
// Only `Running` is used here.
#[allow(dead_code)]
#[path = "common/process.rs"]
mod process;
// The durable server (crashed and started again) is for the chaos test.
#[allow(dead_code)]
#[path = "common/redis.rs"]
mod redis_server;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Extension;
use axum::routing::post;
use bytes::Bytes;
use common::{KEY, PATH, client, signed, try_send, within};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::dedup::{Claim, Dedup, DedupKey, DedupOutcome, DedupStore, Lease, RedisStore};
use periskope_webhook::{DeliveryMetadata, PeriskopeWebhookLayer, WebhookEvent, testing};
use process::Running;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis_server::RedisServer;
use tower::{Layer, ServiceExt, service_fn};

async fn connection(server: &RedisServer) -> ConnectionManager {
    let client = redis::Client::open(server.url()).unwrap();
    ConnectionManager::new(client).await.expect("connect to the test redis-server")
}

async fn claim(store: &RedisStore, key: &str) -> Claim<periskope_webhook::dedup::RedisLease> {
    store.claim(&DedupKey::new(key)).await.expect("redis answers")
}

fn label<L>(claim: &Claim<L>) -> &'static str {
    match claim {
        Claim::New(_) => "new",
        Claim::Delivered => "delivered",
        Claim::InFlight => "in flight",
        _ => "other",
    }
}

/// Claims `key` until it is new (a release is asynchronous), at most for `limit`.
async fn claim_when_free(
    store: &RedisStore,
    key: &str,
    limit: Duration,
) -> periskope_webhook::dedup::RedisLease {
    let deadline = Instant::now() + limit;
    loop {
        match claim(store, key).await {
            Claim::New(lease) => return lease,
            other if Instant::now() > deadline => panic!("{key} still {} after {limit:?}", label(&other)),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test]
async fn claims_are_owned_by_their_token() {
    let Some(server) = RedisServer::start() else { return };
    let mut raw = connection(&server).await;
    let store = RedisStore::from_connection(raw.clone()).prefix("t1:");

    let first = claim_when_free(&store, "k", Duration::ZERO).await;
    assert_eq!(label(&claim(&store, "k").await), "in flight");
    first.settle(true).await.unwrap();
    assert_eq!(label(&claim(&store, "k").await), "delivered");

    // A failed delivery releases its claim; a dropped one too (from a spawned task).
    claim_when_free(&store, "f", Duration::ZERO).await.settle(false).await.unwrap();
    drop(claim_when_free(&store, "f", Duration::ZERO).await);
    claim_when_free(&store, "f", Duration::from_secs(2)).await.settle(true).await.unwrap();

    // A claim that was lost (here deleted, as an expired lease would be) and taken over is
    // not ended by its first holder, whether it fails or succeeds late.
    let lost = claim_when_free(&store, "o", Duration::ZERO).await;
    let _: () = raw.del("t1:o").await.unwrap();
    let current = claim_when_free(&store, "o", Duration::ZERO).await;
    lost.settle(false).await.unwrap();
    assert_eq!(label(&claim(&store, "o").await), "in flight");
    let _: () = raw.del("t1:o").await.unwrap();
    let taken = claim_when_free(&store, "o", Duration::ZERO).await;
    current.settle(true).await.unwrap();
    assert_eq!(label(&claim(&store, "o").await), "in flight", "a stale success leaves the new claim");
    taken.settle(true).await.unwrap();
    assert_eq!(label(&claim(&store, "o").await), "delivered");

    let keys: Vec<String> = raw.keys("*").await.unwrap();
    assert!(keys.iter().all(|key| key.starts_with("t1:")), "{keys:?}");
}

/// When `key` expires, in Unix milliseconds on Redis's clock (-2: no such key).
async fn expiry(raw: &mut ConnectionManager, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME").arg(key).query_async(raw).await.unwrap()
}

/// Redis's clock, in Unix milliseconds.
async fn redis_now(raw: &mut ConnectionManager) -> i64 {
    let (seconds, micros): (i64, i64) = redis::cmd("TIME").query_async(raw).await.unwrap();
    seconds * 1000 + micros / 1000
}

/// Waits until Redis's clock is past `millis`, when a key expiring then is gone.
async fn until_redis_passes(raw: &mut ConnectionManager, millis: i64, what: &str) {
    within(what, async {
        while redis_now(raw).await <= millis {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_claim_outlives_a_slow_handler_and_a_dead_one_ends_with_its_lease() {
    let Some(server) = RedisServer::start() else { return };
    let mut raw = connection(&server).await;
    // Renewed every 0.5 s: a busy machine would have to starve the renewal for a whole second
    // to lose a held claim.
    let lease = Duration::from_millis(1500);
    let store = RedisStore::from_connection(raw.clone()).lease(lease).prefix("lease:");

    let slow = claim_when_free(&store, "slow", Duration::ZERO).await;
    let first_lease_ends = expiry(&mut raw, "lease:slow").await;
    assert!(first_lease_ends > 0, "the claim is a key with an expiry: {first_lease_ends}");
    within("the held claim is renewed", async {
        while expiry(&mut raw, "lease:slow").await <= first_lease_ends {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    until_redis_passes(&mut raw, first_lease_ends, "the claim's first lease runs out").await;
    assert_eq!(label(&claim(&store, "slow").await), "in flight", "renewed while held");
    slow.settle(true).await.unwrap();

    // A holder that vanished without a word: its runtime (and renewal) gone, nothing released.
    let url = server.url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = RedisStore::connect(&url).await.unwrap().lease(lease).prefix("lease:");
            std::mem::forget(claim_when_free(&store, "dead", Duration::ZERO).await);
        });
    })
    .join()
    .unwrap();
    let lease_ends = expiry(&mut raw, "lease:dead").await;
    assert!(lease_ends > 0, "the claim is a key with an expiry: {lease_ends}");
    assert_eq!(label(&claim(&store, "dead").await), "in flight", "held until its lease runs out");
    until_redis_passes(&mut raw, lease_ends, "the vanished holder's lease runs out").await;
    // Free at once: nothing renewed it, and nothing else held it back.
    claim_when_free(&store, "dead", Duration::ZERO).await.settle(true).await.unwrap();
}

#[tokio::test]
async fn an_endless_ttl_keeps_delivered_keys_without_expiry() {
    let Some(server) = RedisServer::start() else { return };
    let mut raw = connection(&server).await;
    let store = RedisStore::from_connection(raw.clone()).ttl(Duration::MAX).prefix("forever:");
    claim_when_free(&store, "k", Duration::ZERO).await.settle(true).await.unwrap();
    assert_eq!(label(&claim(&store, "k").await), "delivered");
    let ttl: i64 = raw.pttl("forever:k").await.unwrap();
    assert_eq!(ttl, -1, "no expiry");

    let day = RedisStore::from_connection(raw.clone()).prefix("day:");
    claim_when_free(&day, "k", Duration::ZERO).await.settle(true).await.unwrap();
    let ttl: i64 = raw.pttl("day:k").await.unwrap();
    assert!(ttl > 23 * 3600 * 1000, "{ttl}");
}

/// `.timeout(..)` bounds a call, not the connection `connect` makes: a server slower than the
/// default second still answers within a longer timeout, while the default gives up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_timeout_outlasts_a_slow_server() {
    let Some(server) = RedisServer::start() else { return };
    let patient =
        RedisStore::connect(&server.url()).await.unwrap().timeout(Duration::from_secs(10)).prefix("slow:");
    let default = RedisStore::connect(&server.url()).await.unwrap().prefix("slow:");
    // Both connected, their scripts loaded, before the stall.
    claim_when_free(&patient, "warm", Duration::ZERO).await.settle(true).await.unwrap();
    claim_when_free(&default, "warm-default", Duration::ZERO).await.settle(true).await.unwrap();

    // From its answer on, the server holds every client's commands for 2.5 s: both claims
    // below are sent while it stalls.
    let mut raw = connection(&server).await;
    let () = redis::cmd("CLIENT").arg("PAUSE").arg(2500).arg("ALL").query_async(&mut raw).await.unwrap();
    let (patient_answer, default_answer) = tokio::join!(
        patient.claim(&DedupKey::new("during-the-stall")),
        default.claim(&DedupKey::new("during-the-stall-default")),
    );
    if let Ok(claim) = &default_answer {
        panic!("the default timeout outlasted the stall: {}", label(claim));
    }
    assert!(matches!(patient_answer, Ok(Claim::New(_))), "{:?}", patient_answer.err());
}

fn message(id: &str) -> String {
    format!(r#"{{"event":"message.created","data":{{"message_id":"{id}","org_phone":"a@c.us"}}}}"#)
}

#[tokio::test]
async fn a_store_that_goes_away_hands_deliveries_on_within_its_timeout() {
    let Some(server) = RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap().timeout(Duration::from_millis(300));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        service_fn(move |request: Request<Full<Bytes>>| {
            seen.lock().unwrap().push(request.extensions().get::<DeliveryMetadata>().unwrap().dedup);
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        })
    };
    let service = PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store)).layer(handler);
    let deliver = |id: &str| {
        let request = testing::signed_request_for_body::<Full<Bytes>>(KEY, PATH, message(id));
        service.clone().oneshot(request)
    };
    assert_eq!(deliver("up").await.unwrap().status(), StatusCode::OK);
    drop(server);
    let started = Instant::now();
    assert_eq!(deliver("down").await.unwrap().status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(3), "bounded by the timeout: {:?}", started.elapsed());
    assert_eq!(*seen.lock().unwrap(), [DedupOutcome::New, DedupOutcome::StoreUnavailable]);
}

#[tokio::test]
async fn a_timeout_in_front_of_the_layer_releases_a_redis_claim() {
    let Some(server) = RedisServer::start() else { return };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        service_fn(move |_request: Request<Full<Bytes>>| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        })
    };
    let service = tower::timeout::Timeout::new(
        PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store)).layer(handler),
        Duration::from_millis(100),
    );
    let deliver =
        || service.clone().oneshot(testing::signed_request_for_body::<Full<Bytes>>(KEY, PATH, message("t")));
    assert!(deliver().await.is_err(), "the first attempt times out");
    // The release is sent from a spawned task; the retry is handled within a few tries.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let status = deliver().await.unwrap().status();
        statuses.push(status);
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(statuses.last(), Some(&StatusCode::OK), "{statuses:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// Two replicas: this test binary, started again as a server process.

const REPLICA_REDIS: &str = "PERISKOPE_TEST_REPLICA_REDIS";
const REPLICA_LOG: &str = "PERISKOPE_TEST_REPLICA_LOG";
const REPLICA_LEASE_MS: &str = "PERISKOPE_TEST_REPLICA_LEASE_MS";
const REPLICA_HANGS: &str = "PERISKOPE_TEST_REPLICA_HANGS";

/// The replica server: de-duplicates through the Redis at `$PERISKOPE_TEST_REPLICA_REDIS`,
/// appends each handled message id to `$PERISKOPE_TEST_REPLICA_LOG`, and, when
/// `$PERISKOPE_TEST_REPLICA_HANGS` is set, never finishes a `hang-` message (after printing
/// `started <id>`). Runs until killed; does nothing without its environment.
#[test]
#[ignore = "a server process started by the replica tests"]
fn replica() {
    let Ok(url) = std::env::var(REPLICA_REDIS) else { return };
    let log = PathBuf::from(std::env::var(REPLICA_LOG).unwrap());
    let lease = Duration::from_millis(std::env::var(REPLICA_LEASE_MS).unwrap().parse().unwrap());
    let hangs = std::env::var(REPLICA_HANGS).is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = RedisStore::connect(&url).await.unwrap().lease(lease).prefix("replicas:");
        let app = Router::new()
            .route(
                PATH,
                post(move |Extension(event): Extension<WebhookEvent>| {
                    let log = log.clone();
                    async move {
                        let id =
                            event.event().message().and_then(|m| m.message_id.as_deref()).unwrap().to_owned();
                        if hangs && id.starts_with("hang-") {
                            println!("started {id}");
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        append_line(&log, &id);
                        "handled"
                    }
                }),
            )
            .layer(PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on http://{}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

fn append_line(log: &Path, line: &str) {
    // One `write` of a short line with O_APPEND: lines from both processes never interleave.
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn handled(log: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

struct Replicas {
    a: Option<Running>,
    b: Running,
    log: PathBuf,
    _redis: RedisServer,
}

impl Replicas {
    /// Two replica processes sharing one Redis; `a` hangs on `hang-` messages.
    fn start(name: &str, lease: Duration) -> Option<Replicas> {
        let redis = RedisServer::start()?;
        let log = std::env::temp_dir().join(format!("periskope-replicas-{name}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let replica = |hangs: bool| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .args(["--ignored", "--exact", "replica", "--nocapture", "--test-threads=1"])
                .env(REPLICA_REDIS, redis.url())
                .env(REPLICA_LOG, &log)
                .env(REPLICA_LEASE_MS, lease.as_millis().to_string());
            if hangs {
                command.env(REPLICA_HANGS, "1");
            }
            command
        };
        let a = Running::start(&format!("{name}-a"), &mut replica(true));
        let b = Running::start(&format!("{name}-b"), &mut replica(false));
        Some(Replicas { a: Some(a), b, log, _redis: redis })
    }

    fn url(running: &Running) -> String {
        format!("http://{}{PATH}", running.addr)
    }

    fn a(&self) -> &Running {
        self.a.as_ref().expect("replica a runs")
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sends `id` to `url` until it is answered 200 (retrying on 409), at most `limit`; returns
/// the number of 409s.
async fn deliver_until_handled(url: &str, id: &str, limit: Duration) -> usize {
    let client = client();
    let deadline = Instant::now() + limit;
    let mut conflicts = 0;
    loop {
        let reply = try_send(&client, signed(url, KEY, message(id))).await.expect("the replica answers");
        match reply.status {
            StatusCode::OK => return conflicts,
            StatusCode::CONFLICT if Instant::now() < deadline => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("{id}: {other} after {conflicts} conflicts"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_handle_each_delivery_exactly_once_under_load() {
    let Some(replicas) = Replicas::start("load", Duration::from_secs(10)) else { return };
    let urls = [Replicas::url(replicas.a()), Replicas::url(&replicas.b)];
    const DELIVERIES: usize = 1000;
    const CLIENTS: usize = 64;
    // Each delivery three times, its copies spread over both replicas and over time.
    let sends: Arc<Vec<(String, usize)>> = Arc::new(
        (0..3).flat_map(|copy| (0..DELIVERIES).map(move |n| (format!("load-{n}"), (n + copy) % 2))).collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (sends, next, urls) = (sends.clone(), next.clone(), urls.clone());
            tokio::spawn(async move {
                let client = client();
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some((id, first)) = sends.get(index) else { return };
                    for attempt in 0..500 {
                        let url = &urls[(first + attempt) % 2];
                        let reply =
                            within("a replica answers", try_send(&client, signed(url, KEY, message(id))))
                                .await
                                .expect("the replica answers");
                        match reply.status {
                            StatusCode::OK => break,
                            StatusCode::CONFLICT => tokio::time::sleep(Duration::from_millis(5)).await,
                            other => panic!("{id}: {other}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task).await.expect("the load finishes").unwrap();
    }
    let counts = handled(&replicas.log);
    assert_eq!(counts.len(), DELIVERIES, "every delivery was handled");
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_handler_leaves_the_retry_to_the_other_once_the_lease_ends() {
    let lease = Duration::from_millis(1500);
    let Some(mut replicas) = Replicas::start("kill", lease) else { return };
    let url_a = Replicas::url(replicas.a());
    let first =
        tokio::spawn(async move { try_send(&client(), signed(&url_a, KEY, message("hang-kill"))).await });
    assert_eq!(replicas.a().next_line(), "started hang-kill");
    replicas.a.take().expect("replica a").stop();
    assert!(first.await.unwrap().is_err(), "the killed replica never answered");

    let started = Instant::now();
    let conflicts =
        deliver_until_handled(&Replicas::url(&replicas.b), "hang-kill", Duration::from_secs(10)).await;
    assert!(conflicts > 0, "the claim outlived its holder until the lease ended");
    assert!(
        started.elapsed() < lease + Duration::from_secs(3),
        "handled soon after the lease: {:?}",
        started.elapsed()
    );
    assert_eq!(handled(&replicas.log).get("hang-kill"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_handler_leaves_the_retry_to_the_other_at_once() {
    // A lease far longer than the test: only the release can let the retry in.
    let Some(replicas) = Replicas::start("cancel", Duration::from_secs(60)) else { return };
    let url_a = Replicas::url(replicas.a());
    let first =
        tokio::spawn(async move { try_send(&client(), signed(&url_a, KEY, message("hang-cancel"))).await });
    assert_eq!(replicas.a().next_line(), "started hang-cancel");
    // The client gives up: its connection closes, and the server drops the request.
    first.abort();
    let _ = first.await;

    let started = Instant::now();
    deliver_until_handled(&Replicas::url(&replicas.b), "hang-cancel", Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(handled(&replicas.log).get("hang-cancel"), Some(&1));
}
