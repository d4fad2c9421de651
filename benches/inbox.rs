//! The inbox over loopback HTTP, in one run: acknowledged deliveries per second and time to the
//! `200`, against the layer with a no-op handler; the same with a worker draining the inbox in
//! the same process; and what one claim costs at any backlog.
//!
//! `cargo bench --bench inbox` (add `--profile release` to skip fat LTO). 64 concurrent clients,
//! each on its own keep-alive connection, POST signed 1.8 KB `message.created` deliveries (each
//! with its own message id, so none is a duplicate), over 16 chats unless a setup says one
//! chat, to the embedded SQLite store and to PostgreSQL (a throw-away cluster on a free port,
//! `fsync` and `synchronous_commit` on; skipped when PostgreSQL 15 is not installed).
//!
//! - **Acknowledgements**: the layer with a no-op handler, then the inbox's acceptor alone on
//!   each store, over 16 chats and over one; each for `INBOX_BENCH_SECS` seconds (default 5),
//!   twice, interleaved; the better round.
//! - **Draining**: the acceptor and a worker with a no-op handler in one process, as an app
//!   runs them, for `INBOX_DRAIN_SECS` seconds (default 30): acknowledged and handled per
//!   second during the load, how long after its end the queue is empty, and the store's claims,
//!   jobs a claim and settlements a second.
//! - **Pickup**: an idle worker in the acceptor's process (woken by it), one delivery at a
//!   time: from each `200` to its handler's start.
//! - **Claims at any backlog**: a store seeded with 1,000 and then 1,000,000 due pending jobs
//!   over 16 chats; the median time of a claim of 8 jobs (each batch then handled), and of a
//!   claim while every chat's first job runs (it finds nothing to run).
//!
//! - **Counts**: `stats` (the console's counts, `record_metrics`) on 1,000,000 jobs as an inbox
//!   holds them, then on 4,000,000, the jobs added all handled.
//!
//! - **Replicas**: copies of `examples/inbox` (acceptor and worker) on one PostgreSQL inbox,
//!   one and then three, the clients spread over them: acknowledged per second.
//!
//! - **Retention**: a store holding `INBOX_RETENTION_JOBS` handled jobs (default 300,000, a
//!   day's at about 3.5 a second) takes signed deliveries on a fixed schedule, a worker handling
//!   them, first alone, then while the worker's retention deletes those jobs: the time from
//!   when each was due to its `200`.
//!
//! `INBOX_BENCH_PARTS=drain,claims` runs only those parts (`acks`, `drain`, `pickup`, `claims`,
//! `counts`, `replicas`, `retention`), and `INBOX_BENCH_STORES=postgresql` on that store only
//! (`sqlite`, `postgresql`).
//! Under `cargo test` (`--bench` absent) every part runs briefly, to check that it works.
//!
//! Clients, servers and PostgreSQL share the machine's cores, so the figures are for comparison
//! within one run, not absolute capacities.

#[path = "support/counted.rs"]
mod counted;
#[allow(dead_code)] // Only the cluster and its databases are used.
#[path = "../tests/common/postgres.rs"]
mod postgres;
#[allow(dead_code)] // Only the examples' binaries and the running program are used.
#[path = "../tests/common/process.rs"]
mod process;
#[path = "support/schedule.rs"]
mod schedule;
#[allow(dead_code)] // The bodies are shared; this benchmark uses one of them.
mod support;
#[path = "support/unique.rs"]
mod unique;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::inbox::{ClaimRequest, Inbox, InboxStore, PostgresStore, SqliteStore, WorkerConfig};
use periskope_webhook::signature::SIGNATURE_HEADER;
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent};
use tower::Layer;

use crate::counted::{CallCounts, Counted};
use crate::schedule::{DELIVERY_RATE, deliver_on_schedule, deliveries_in, quantile};
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

/// A POST of `body` to `url`, signed with the benchmark's key.
fn signed(url: &str, body: Bytes) -> Request<Full<Bytes>> {
    let signature = periskope_webhook::testing::signature(KEY, &body);
    Request::post(url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body))
        .expect("request")
}

/// 64 clients post for `duration`, or `requests` deliveries in all when given.
async fn load(url: &str, bodies: &Arc<UniqueMessages>, duration: Duration, requests: Option<usize>) -> Round {
    load_spread(&[url.to_owned()], bodies, duration, requests).await
}

/// [`load`] over several servers, the clients taking them in turn.
async fn load_spread(
    urls: &[String],
    bodies: &Arc<UniqueMessages>,
    duration: Duration,
    requests: Option<usize>,
) -> Round {
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let url = urls[client % urls.len()].clone();
            let (bodies, sent) = (Arc::clone(bodies), Arc::clone(&sent));
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
                    let request = signed(&url, bodies.next());
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

/// How long each part runs, from the command line and the environment.
struct Plan {
    /// The parts to run (`INBOX_BENCH_PARTS`, comma-separated: `acks`, `drain`, `pickup`,
    /// `claims`); all when unset.
    parts: Option<String>,
    ack_duration: Duration,
    drain_duration: Duration,
    requests: Option<usize>,
    rounds: usize,
    backlogs: [i64; 2],
    /// The handled jobs retention deletes (`INBOX_RETENTION_JOBS`).
    retained: i64,
}

impl Plan {
    fn runs(&self, part: &str) -> bool {
        self.parts.as_deref().is_none_or(|parts| parts.split(',').any(|name| name.trim() == part))
    }

    fn new() -> Self {
        let benchmarking = std::env::args().any(|arg| arg == "--bench");
        let seconds = |name: &str, default: u64| {
            Duration::from_secs(std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default))
        };
        if benchmarking {
            Plan {
                parts: std::env::var("INBOX_BENCH_PARTS").ok(),
                ack_duration: seconds("INBOX_BENCH_SECS", 5),
                drain_duration: seconds("INBOX_DRAIN_SECS", 30),
                requests: None,
                rounds: 2,
                backlogs: [1_000, 1_000_000],
                retained: std::env::var("INBOX_RETENTION_JOBS")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(300_000),
            }
        } else {
            Plan {
                parts: None,
                ack_duration: Duration::ZERO,
                drain_duration: Duration::ZERO,
                requests: Some(300),
                rounds: 1,
                backlogs: [300, 1_000],
                retained: 1_000,
            }
        }
    }
}

/// A fresh store of one kind: a new SQLite file, or a new PostgreSQL database.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

/// Where the fresh stores live; removed on drop.
struct Stores {
    dir: std::path::PathBuf,
    files: AtomicU64,
    postgres: Option<&'static postgres::Cluster>,
    databases: std::sync::Mutex<Vec<postgres::Database>>,
    /// The stores the parts run on (`INBOX_BENCH_STORES`): all when unset.
    only: Option<String>,
}

/// One fresh store of either kind, with what seeding it needs.
#[derive(Clone)]
enum Fresh {
    Sqlite(SqliteStore, std::path::PathBuf),
    Postgres(PostgresStore, String),
}

impl Stores {
    fn new() -> Self {
        postgres::remove_abandoned_dirs("periskope-inbox-bench-");
        let dir = std::env::temp_dir().join(format!("periskope-inbox-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Stores {
            dir,
            files: AtomicU64::new(0),
            postgres: postgres::cluster(),
            databases: Default::default(),
            only: std::env::var("INBOX_BENCH_STORES").ok(),
        }
    }

    fn kinds(&self) -> Vec<Kind> {
        let mut kinds = vec![Kind::Sqlite];
        if self.postgres.is_some() {
            kinds.push(Kind::Postgres);
        }
        kinds.retain(|kind| {
            self.only
                .as_deref()
                .is_none_or(|only| only.split(',').any(|name| name.trim().eq_ignore_ascii_case(kind.name())))
        });
        kinds
    }

    async fn fresh(&self, kind: Kind) -> Fresh {
        match kind {
            Kind::Sqlite => {
                let n = self.files.fetch_add(1, Ordering::Relaxed);
                let path = self.dir.join(format!("inbox-{n}.db"));
                Fresh::Sqlite(SqliteStore::open(&path).expect("the embedded inbox"), path)
            }
            Kind::Postgres => {
                let database = self.postgres.expect("PostgreSQL is installed").database();
                let url = database.url();
                self.databases.lock().expect("databases").push(database);
                let store = PostgresStore::connect(&url).await.expect("the PostgreSQL inbox");
                Fresh::Postgres(store, url)
            }
        }
    }
}

impl Drop for Stores {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `body` with the fresh store, whichever its kind.
macro_rules! with_store {
    ($fresh:expr, |$store:ident| $body:expr) => {
        match $fresh {
            Fresh::Sqlite($store, _) => $body,
            Fresh::Postgres($store, _) => $body,
        }
    };
}

/// Acknowledged per second, the acceptor alone.
async fn acknowledgements(stores: &Stores, kind: Kind, chats: u64, plan: &Plan) -> Round {
    let bodies = Arc::new(UniqueMessages::new().over_chats(chats));
    let fresh = stores.fresh(kind).await;
    let (url, task) = with_store!(fresh.clone(), |store| serve(inbox_app(store)).await);
    let best = best_round(&url, &bodies, plan).await;
    task.abort();
    best
}

/// The round with the most acknowledgements a second, of the plan's rounds against `url`.
async fn best_round(url: &str, bodies: &Arc<UniqueMessages>, plan: &Plan) -> Round {
    let mut best: Option<Round> = None;
    for _ in 0..plan.rounds {
        let round = load(url, bodies, plan.ack_duration, plan.requests).await;
        if best.as_ref().is_none_or(|best| round.per_second() > best.per_second()) {
            best = Some(round);
        }
    }
    best.expect("a round ran")
}

/// What the worker did beside the acceptor.
struct Drained {
    acknowledged: Round,
    handled_during_load: u64,
    emptied_after: Option<Duration>,
    /// The store's claims, jobs claimed and settlements during the load.
    calls: CallCounts,
}

/// The acceptor and a worker with a no-op handler in one process, under the load.
async fn drain<St: InboxStore>(store: St, chats: u64, plan: &Plan) -> Drained {
    let handled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&handled);
    let events = EventRouter::new().fallback(move |_event: WebhookEvent| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok::<(), String>(())
        }
    });
    let counted = Counted::new(store.clone());
    let inbox = Inbox::new(counted.clone());
    let worker = inbox.worker(events).spawn();
    let app = Router::new().route_service(PATH, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor()));
    let (url, task) = serve(app).await;
    let bodies = Arc::new(UniqueMessages::new().over_chats(chats));
    let acknowledged = load(&url, &bodies, plan.drain_duration, plan.requests).await;
    let handled_during_load = handled.load(Ordering::Relaxed);
    let calls = counted.calls.read();
    let load_ended = Instant::now();
    let mut emptied_after = None;
    while load_ended.elapsed() < Duration::from_secs(60) {
        let stats = store.stats(SystemTime::now()).await.expect("stats");
        if stats.pending + stats.running == 0 {
            emptied_after = Some(load_ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    worker.shutdown().await.expect("the worker stops");
    Drained { acknowledged, handled_during_load, emptied_after, calls }
}

/// Pickup: an idle worker, woken by the acceptor of `accepting` when it is the same inbox, or by
/// the store's announcement otherwise. One delivery at a time; for each, the time from its
/// `200` to its handler's start (zero when the handler started first).
async fn pickup<St: InboxStore>(
    accepting: Inbox<St>,
    working: Inbox<St>,
    deliveries: usize,
) -> Vec<Duration> {
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let events = EventRouter::new().fallback(move |_event: WebhookEvent| {
        let started = started.clone();
        async move {
            let _ = started.send(Instant::now());
            Ok::<(), String>(())
        }
    });
    let worker = working.worker(events).spawn();
    let app = Router::new().route_service(PATH, PeriskopeWebhookLayer::new(KEY).layer(accepting.acceptor()));
    let (url, task) = serve(app).await;
    let bodies = UniqueMessages::new().over_chats(16);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut pickups = Vec::with_capacity(deliveries);
    for _ in 0..deliveries {
        let response = client.request(signed(&url, bodies.next())).await.expect("an answer");
        let acknowledged = Instant::now();
        assert_eq!(response.status(), StatusCode::OK, "the server refused a delivery");
        let handled = starts.recv().await.expect("the handler ran");
        pickups.push(handled.saturating_duration_since(acknowledged));
    }
    task.abort();
    worker.shutdown().await.expect("the worker stops");
    pickups
}

/// Seeds `jobs` due pending jobs over 16 chats, as a running inbox holds them: each chat's first
/// job in the claim's index, the others marked waiting behind it (SQLite marks them as it
/// stores them; on PostgreSQL, the worker's claims mark them, a bounded number each, as they
/// arrive).
async fn seed(fresh: &Fresh, jobs: i64) {
    let body = UniqueMessages::new().next().to_vec();
    match fresh {
        Fresh::Sqlite(_, path) => {
            let connection = rusqlite::Connection::open(path).expect("the SQLite file");
            connection.busy_timeout(Duration::from_secs(30)).expect("a busy timeout");
            connection
                .execute(
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1)
                     INSERT INTO periskope_inbox_jobs
                         (dedup_key, event, ordering_key, body, received_at, run_at, path, waiting)
                     SELECT 'seed|' || i, 'message.created', 'chat|seed' || (i % 16), ?2, 0, 0, '/', i >= 16 FROM n",
                    rusqlite::params![jobs, body],
                )
                .expect("seeded");
        }
        Fresh::Postgres(_, url) => {
            let (client, connection) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            client
                .execute(
                    "INSERT INTO periskope_inbox_jobs
                         (dedup_key, event, ordering_key, body, received_at, run_at, path, waiting)
                     SELECT 'seed|' || i, 'message.created', 'chat|seed' || (i % 16), $2, 0, 0, '/', i >= 16
                     FROM generate_series(0, $1::BIGINT - 1) AS i",
                    &[&jobs, &body],
                )
                .await
                .expect("seeded");
            // Analyzed and in the data files, as they would be long after they arrived.
            client.batch_execute("ANALYZE periskope_inbox_jobs; CHECKPOINT").await.expect("analyzed");
        }
    }
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median claim times at one backlog: claiming 8 (then handled), and claiming while every
/// chat's first job runs.
async fn claim_costs<St: InboxStore>(store: St) -> (Duration, Duration) {
    const SAMPLES: usize = 31;
    let request = || ClaimRequest::new(8, Duration::from_secs(600), 8);
    let mut claiming = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let jobs = store.claim(request()).await.expect("a claim");
        claiming.push(started.elapsed());
        assert_eq!(jobs.len(), 8, "8 chats' first jobs were due (sample {})", claiming.len());
        for job in jobs {
            store.complete(job.lease(), SystemTime::now()).await.expect("handled");
        }
    }
    let running = store.claim(ClaimRequest::new(16, Duration::from_secs(600), 8)).await.expect("a claim");
    assert_eq!(running.len(), 16, "every chat's first job runs");
    let mut blocked = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let jobs = store.claim(request()).await.expect("a claim");
        blocked.push(started.elapsed());
        assert!(jobs.is_empty(), "nothing may run while every chat's first job runs");
    }
    (median(claiming), median(blocked))
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let plan = Plan::new();
    let stores = Stores::new();

    let mut acceptor_alone = Vec::new();
    if plan.runs("acks") {
        acceptor_alone = acknowledgement_figures(&stores, &plan).await;
    }
    if plan.runs("drain") {
        drain_figures(&stores, &plan, &acceptor_alone).await;
    }
    if plan.runs("pickup") {
        pickup_figures(&stores, &plan).await;
    }
    if plan.runs("claims") {
        claim_figures(&stores, &plan).await;
    }
    if plan.runs("counts") {
        count_figures(&stores, &plan).await;
    }
    if plan.runs("replicas") {
        replica_figures(&stores, &plan).await;
    }
    if plan.runs("retention") {
        retention_figures(&stores, &plan).await;
    }
}

/// Replicas sharing one PostgreSQL inbox: copies of `examples/inbox` (acceptor and worker, a
/// no-op handler), one alone and then three, the clients spread over them; the better of the
/// plan's rounds for each.
async fn replica_figures(stores: &Stores, plan: &Plan) {
    if !stores.kinds().contains(&Kind::Postgres) {
        return;
    }
    println!();
    println!(
        "## Replicas on one PostgreSQL inbox (examples/inbox, {CLIENTS} clients spread over them, 16 chats)"
    );
    println!("| replicas | acknowledged/s | p50 to 200 | p99 to 200 |");
    println!("|---:|---:|---:|---:|");
    let binary = process::example_binary(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), "inbox");
    let mut rates = Vec::new();
    for replicas in [1, 3] {
        let Fresh::Postgres(_, url) = stores.fresh(Kind::Postgres).await else { unreachable!() };
        let running: Vec<process::Running> = (0..replicas)
            .map(|n| {
                process::Running::start(
                    &format!("replica {n}"),
                    std::process::Command::new(&binary)
                        .env("PERISKOPE_INBOX", &url)
                        .env("ADDR", "127.0.0.1:0")
                        .env("PERISKOPE_SIGNING_KEY", KEY)
                        .env("HANDLER_DELAY_MS", "0"),
                )
            })
            .collect();
        let urls: Vec<String> =
            running.iter().map(|replica| format!("http://{}{PATH}", replica.addr)).collect();
        let bodies = Arc::new(UniqueMessages::new().over_chats(16));
        let mut best: Option<Round> = None;
        for _ in 0..plan.rounds {
            let round = load_spread(&urls, &bodies, plan.ack_duration, plan.requests).await;
            if best.as_ref().is_none_or(|best| round.per_second() > best.per_second()) {
                best = Some(round);
            }
        }
        let best = best.expect("a round ran");
        println!("| {replicas} | {:.0} | {} | {} |", best.per_second(), ms(best.p50), ms(best.p99));
        rates.push(best.per_second());
        drop(running);
    }
    println!("three replicas together: {:.2}x one", rates[1] / rates[0]);
}

/// What `stats` (the console's counts, `record_metrics`) costs at a backlog and at four times
/// it, the jobs added all handled, on each store.
async fn count_figures(stores: &Stores, plan: &Plan) {
    println!();
    println!("## Counts (`stats`, median of 31): a backlog, then four times it, the jobs added all handled");
    println!("| store | jobs | stats | jobs | stats | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    let [small, _] = plan.backlogs;
    let (first, then) = if plan.requests.is_some() { (small, 4 * small) } else { (1_000_000, 4_000_000) };
    for kind in stores.kinds() {
        let fresh = stores.fresh(kind).await;
        seed_handled(&fresh, 0, first, false, 2).await;
        let at_first = with_store!(fresh.clone(), |store| stats_cost(store).await);
        seed_handled(&fresh, first, then - first, true, 2).await;
        let at_then = with_store!(fresh.clone(), |store| stats_cost(store).await);
        println!(
            "| {} | {first} | {} | {then} | {} | {:.2}x |",
            kind.name(),
            ms(at_first),
            ms(at_then),
            at_then.as_secs_f64() / at_first.as_secs_f64()
        );
    }
}

/// The median time of `stats`, after one call to warm the caches.
async fn stats_cost<St: InboxStore>(store: St) -> Duration {
    let read = || async { store.stats(SystemTime::now()).await.expect("stats") };
    let seeded = read().await;
    assert!(seeded.done > 0, "the store holds handled jobs");
    let mut samples = Vec::new();
    for _ in 0..31 {
        let started = Instant::now();
        let _ = read().await;
        samples.push(started.elapsed());
    }
    median(samples)
}

/// Seeds `jobs` jobs from number `from` on, each with a body of `body_bytes` zero bytes, received
/// and settled at the epoch: all handled, or as an inbox holds them (one in fifty dead, six in
/// fifty pending, the rest handled).
async fn seed_handled(fresh: &Fresh, from: i64, jobs: i64, all_done: bool, body_bytes: usize) {
    // `i` is the job's number; `state` its state.
    const STATE: &str =
        "CASE WHEN ?all OR i % 50 >= 7 THEN 'done' WHEN i % 50 = 0 THEN 'dead' ELSE 'pending' END";
    let columns = "(dedup_key, event, ordering_key, body, received_at, run_at, path, state, attempts, handled_at, dead_at)";
    let row = |state: &str, body: &str| {
        format!(
            "'count|' || i, 'message.created', 'chat|count' || (i % 16), {body}, 0, 0, '/', {state}, 1,
             CASE WHEN {state} = 'done' THEN 0 END, CASE WHEN {state} = 'dead' THEN 0 END"
        )
    };
    match fresh {
        Fresh::Sqlite(_, path) => {
            let connection = rusqlite::Connection::open(path).expect("the SQLite file");
            connection.busy_timeout(Duration::from_secs(30)).expect("a busy timeout");
            let state = STATE.replace("?all", if all_done { "1" } else { "0" });
            connection
                .execute(
                    &format!(
                        "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1 + ?2)
                         INSERT INTO periskope_inbox_jobs {columns} SELECT {} FROM n",
                        row(&state, &format!("zeroblob({body_bytes})"))
                    ),
                    rusqlite::params![from, jobs],
                )
                .expect("seeded");
            // In the file, as they would be long after they arrived: the store's checkpoints
            // copy only what it writes itself.
            connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpointed");
        }
        Fresh::Postgres(_, url) => {
            let (client, connection) =
                tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            let state = STATE.replace("?all", if all_done { "true" } else { "false" });
            client
                .execute(
                    &format!(
                        "INSERT INTO periskope_inbox_jobs {columns} SELECT {}
                         FROM generate_series($1::BIGINT, $1::BIGINT + $2::BIGINT - 1) AS i",
                        row(&state, &format!("decode(repeat('00', {body_bytes}), 'hex')"))
                    ),
                    &[&from, &jobs],
                )
                .await
                .expect("seeded");
            // Analyzed and in the data files, as they would be long after they arrived.
            client.batch_execute("ANALYZE periskope_inbox_jobs; CHECKPOINT").await.expect("analyzed");
        }
    }
}

/// Acknowledged per second by the layer alone and by the acceptor on each store, over 16 chats
/// and one: `(store, chats, per second)` for the acceptor.
async fn acknowledgement_figures(stores: &Stores, plan: &Plan) -> Vec<(Kind, u64, f64)> {
    println!("## Acknowledgements ({CLIENTS} clients, loopback HTTP/1.1)");
    println!("| setup | acknowledged/s | p50 to 200 | p99 to 200 |");
    println!("|---|---:|---:|---:|");
    let layer =
        serve(Router::new().route(PATH, post(|| async { "ok" })).layer(PeriskopeWebhookLayer::new(KEY)))
            .await;
    let layer_alone = best_round(&layer.0, &Arc::new(UniqueMessages::new()), plan).await;
    layer.1.abort();
    let print = |name: &str, round: &Round| {
        println!("| {name} | {:.0} | {} | {} |", round.per_second(), ms(round.p50), ms(round.p99));
    };
    print("layer + no-op handler", &layer_alone);
    let mut acceptor_alone = Vec::new();
    for kind in stores.kinds() {
        for chats in [16, 1] {
            let round = acknowledgements(stores, kind, chats, plan).await;
            print(&format!("inbox, {}, {chats} chat(s)", kind.name()), &round);
            acceptor_alone.push((kind, chats, round.per_second()));
        }
    }
    if let Some(sqlite) = acceptor_alone.iter().find(|(kind, chats, _)| *kind == Kind::Sqlite && *chats == 16)
    {
        for (_, chats, rate) in acceptor_alone.iter().filter(|(kind, _, _)| *kind == Kind::Postgres) {
            println!("PostgreSQL, {chats} chat(s): {:.2}x SQLite's 16 chats", rate / sqlite.2);
        }
    }
    acceptor_alone
}

/// The acceptor and a worker in one process, on each store.
async fn drain_figures(stores: &Stores, plan: &Plan, acceptor_alone: &[(Kind, u64, f64)]) {
    println!();
    println!("## Draining: the acceptor and a worker (no-op handler) in one process");
    println!(
        "| store | chats | acknowledged/s | handled/s during the load | with the worker / without | queue empty after the load | claims/s taking jobs | jobs a claim | mean claim | settlements/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in stores.kinds() {
        for chats in [16, 1] {
            let fresh = stores.fresh(kind).await;
            let drained = with_store!(fresh, |store| drain(store, chats, plan).await);
            let seconds = drained.acknowledged.elapsed.as_secs_f64();
            // Without the acknowledgements part in the same run, there is nothing to compare.
            let ratio = acceptor_alone
                .iter()
                .find(|(k, c, _)| *k == kind && *c == chats)
                .map_or("-".to_owned(), |(_, _, alone)| {
                    format!("{:.2}", drained.acknowledged.per_second() / alone)
                });
            let calls = drained.calls;
            println!(
                "| {} | {chats} | {:.0} | {:.0} | {ratio} | {} | {:.0} | {:.1} | {} | {:.0} |",
                kind.name(),
                drained.acknowledged.per_second(),
                drained.handled_during_load as f64 / seconds,
                drained.emptied_after.map_or("not within 60 s".to_owned(), ms),
                calls.claims as f64 / seconds,
                calls.claimed as f64 / calls.claims.max(1) as f64,
                ms(calls.mean_claim),
                calls.settlements as f64 / seconds,
            );
        }
    }
}

/// An idle worker's pickup, on each store.
async fn pickup_figures(stores: &Stores, plan: &Plan) {
    println!();
    println!("## Pickup: an idle worker, one delivery at a time");
    println!("| store | woken by | deliveries | p50 from 200 to the handler | p99 | max |");
    println!("|---|---|---:|---:|---:|---:|");
    let deliveries = if plan.requests.is_some() { 20 } else { 500 };
    let print = |name: &str, woken_by: &str, mut pickups: Vec<Duration>| {
        pickups.sort();
        let at = |quantile: f64| pickups[((pickups.len() as f64 * quantile) as usize).min(pickups.len() - 1)];
        println!(
            "| {name} | {woken_by} | {deliveries} | {} | {} | {} |",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0))
        );
    };
    for kind in stores.kinds() {
        let fresh = stores.fresh(kind).await;
        let pickups = with_store!(fresh, |store| {
            let inbox = Inbox::new(store);
            pickup(inbox.clone(), inbox, deliveries).await
        });
        print(kind.name(), "its acceptor, in its process", pickups);
    }
    if stores.kinds().contains(&Kind::Postgres) {
        let Fresh::Postgres(accepting, url) = stores.fresh(Kind::Postgres).await else { unreachable!() };
        let working = PostgresStore::connect(&url).await.expect("a second store on the same database");
        let pickups = pickup(Inbox::new(accepting), Inbox::new(working), deliveries).await;
        print("PostgreSQL", "a notification (worker on another store)", pickups);
    }
}

/// What a claim costs at a small and a large backlog, on each store.
async fn claim_figures(stores: &Stores, plan: &Plan) {
    println!();
    println!("## Claims at any backlog (median of 31; 16 chats, due pending jobs)");
    println!("| store | backlog | claim 8 | claim while every chat's first job runs |");
    println!("|---|---:|---:|---:|");
    for kind in stores.kinds() {
        let mut costs = Vec::new();
        for backlog in plan.backlogs {
            let fresh = stores.fresh(kind).await;
            seed(&fresh, backlog).await;
            let (claiming, blocked) = with_store!(fresh, |store| claim_costs(store).await);
            println!("| {} | {backlog} | {} | {} |", kind.name(), ms(claiming), ms(blocked));
            costs.push((claiming, blocked));
        }
        let ratio = |at: fn(&(Duration, Duration)) -> Duration| {
            at(&costs[1]).as_secs_f64() / at(&costs[0]).as_secs_f64()
        };
        println!(
            "{}: {} over {} jobs: {:.2}x (claim 8), {:.2}x (every first job running)",
            kind.name(),
            plan.backlogs[1],
            plan.backlogs[0],
            ratio(|cost| cost.0),
            ratio(|cost| cost.1)
        );
    }
}

/// What retention costs intake, on each store: a store holding `plan.retained` handled jobs
/// (1.8 KB bodies, settled long ago) takes deliveries on schedule, with a worker handling them,
/// for the acknowledgement round's time (100 deliveries under `cargo test`); then again while a
/// worker whose retention is an hour deletes the old jobs, as in an app, until it has.
async fn retention_figures(stores: &Stores, plan: &Plan) {
    println!();
    println!(
        "## Retention beside intake ({DELIVERY_RATE} deliveries/s on schedule, each timed from when it was due, \
         a worker handling them)"
    );
    println!("| store | handled jobs deleted | in | deliveries | p50 | p99 | max |");
    println!("|---|---:|---:|---|---:|---:|---:|");
    let deliveries = if plan.requests.is_some() { 100 } else { deliveries_in(plan.ack_duration) };
    let row = |store: &str, deleted: &str, took: &str, phase: &str, times: &[Duration]| {
        println!(
            "| {store} | {deleted} | {took} | {phase} | {} | {} | {} |",
            ms(quantile(times, 0.5)),
            ms(quantile(times, 0.99)),
            ms(*times.last().expect("deliveries"))
        );
    };
    for kind in stores.kinds() {
        let fresh = stores.fresh(kind).await;
        seed_handled(&fresh, 0, plan.retained, true, 1_800).await;
        let (alone, during, took) = with_store!(fresh.clone(), |store| {
            let counted = Counted::new(store);
            let inbox = Inbox::new(counted.clone());
            let app =
                Router::new().route_service(PATH, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor()));
            let (url, task) = serve(app).await;
            let messages = Arc::new(UniqueMessages::new().over_chats(16));
            let worker = |retention| {
                let mut config = WorkerConfig::default();
                config.retention = retention;
                let events =
                    EventRouter::new().fallback(|_event: WebhookEvent| async { Ok::<(), String>(()) });
                inbox.worker(events).config(config).spawn()
            };
            // Nothing is older than the retention, however long: no job is deleted.
            let keeping = worker(Duration::MAX);
            let alone = deliver_on_schedule(&url, KEY, &messages, deliveries, || false).await;
            keeping.shutdown().await.expect("the worker stops");
            let started = Instant::now();
            let deleting = worker(Duration::from_secs(3600));
            let deleted = || counted.calls.read().purged_handled;
            let during = deliver_on_schedule(&url, KEY, &messages, deliveries, || {
                deleted() < plan.retained.unsigned_abs()
            })
            .await;
            while deleted() < plan.retained.unsigned_abs() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let took = started.elapsed();
            deleting.shutdown().await.expect("the worker stops");
            task.abort();
            (alone, during, took)
        });
        row(kind.name(), "", "", "alone", &alone);
        row(kind.name(), &plan.retained.to_string(), &ms(took), "beside retention", &during);
    }
}
