//! The console on an inbox of 1,000,000 jobs, on the embedded SQLite store and on PostgreSQL
//! (a throw-away cluster on a free port, skipped when PostgreSQL 15 is not installed):
//! - the queries behind its pages: the overview's (`stats`, `per_minute` over the last hour,
//!   `dead_letters_by_event`) and the jobs page's (its first page and a deep keyset page, each
//!   with and without a state filter);
//! - time to first byte of the overview, the jobs page and the dead jobs page: from the request
//!   handed to [`Console`] to the first frame of its body, every query and the rendering
//!   included (the socket's own cost, a few tens of microseconds on loopback, is not).
//!
//! Then what the console costs the webhook on an inbox of 400,000 jobs on SQLite
//! (`synchronous=FULL`, as the store always runs): the time to the `200` of signed deliveries
//! (500 a second on a fixed schedule, each timed from when it was due, over loopback HTTP
//! through `PeriskopeWebhookLayer` and the inbox acceptor, served with the console by one axum
//! app) in three phases of the same run: alone; beside 4 loops searching the jobs page by text
//! (`/jobs?q=...`, bearer token); beside those and one bulk purge of the handled jobs (its
//! confirmation page, then its POST: 86% of the jobs). The first two phases take turns three
//! times, so that the machine's other work weighs on both alike, each figure over the three;
//! the purge's comes last, once. Each runs for `CONSOLE_BENCH_LOAD_SECS` seconds (default 5),
//! the purge's until the purge has answered too; this part runs whatever criterion's filter.
//!
//! `cargo bench --bench console --profile release --all-features` (`--profile release` skips
//! fat LTO); `CONSOLE_BENCH_JOBS` changes the size of the first inbox. Under `cargo test
//! --benches` (`--bench` absent) the inboxes hold 1,000 and 2,000 jobs, each query runs once
//! and each phase of the load runs once and sends 100 deliveries, to check that the benchmark
//! works.
//!
//! The inboxes are written directly in SQL, in the stores' own schema (created by opening
//! them): the jobs were received over the last 24 hours, one in fifty is dead (eight event
//! names, 1,000 chats), six in fifty pending, the rest handled; each settled job has one
//! attempt. The SQLite file is not `ANALYZE`d, as the store never does; PostgreSQL's is, as
//! autovacuum would after such a load.

#[allow(dead_code)] // Only the cluster and its databases are used.
#[path = "../tests/common/postgres.rs"]
mod postgres;
#[path = "support/schedule.rs"]
mod schedule;
#[allow(dead_code)] // The bodies are shared; this benchmark uses one of them.
mod support;
#[path = "support/unique.rs"]
mod unique;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::PeriskopeWebhookLayer;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{
    ConsoleStore, Inbox, InboxStore, JobFilter, JobState, PostgresStore, SqliteStore,
};
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt};

use crate::schedule::{DELIVERY_RATE, deliver_on_schedule, deliveries_in, quantile};
use crate::unique::UniqueMessages;

/// The columns [`job_values`] fills.
const JOB_COLUMNS: &str = "dedup_key, event, ordering_key, body, received_at, run_at, state, attempts, \
                           last_error, handled_at, dead_at";

/// The values of job `i` of `jobs` received until `now`, in SQL that SQLite and PostgreSQL
/// share; `body` is an empty JSON object in the database's spelling.
fn job_values(body: &str) -> String {
    let received = "(now - (jobs - i) * 86400000 / jobs)";
    format!(
        "'message.created|2:m' || i,
         CASE i % 8 WHEN 0 THEN 'message.created' WHEN 1 THEN 'message.updated' WHEN 2 THEN 'message.deleted'
             WHEN 3 THEN 'reaction.created' WHEN 4 THEN 'chat.created' WHEN 5 THEN 'ticket.created'
             WHEN 6 THEN 'ticket.updated' ELSE 'note.created' END,
         'chat|c' || (i % 1000), {body}, {received}, {received},
         CASE WHEN i % 50 = 0 THEN 'dead' WHEN i % 50 <= 6 THEN 'pending' ELSE 'done' END,
         CASE WHEN i % 50 BETWEEN 1 AND 6 THEN 0 ELSE 1 END,
         CASE WHEN i % 50 = 0 THEN 'CRM refused job ' || i END,
         CASE WHEN i % 50 > 6 THEN {received} + 100 END,
         CASE WHEN i % 50 = 0 THEN {received} + 100 END"
    )
}

const ATTEMPTS: &str =
    "INSERT INTO periskope_inbox_attempts (job_id, number, started_at, ended_at, outcome, error)
     SELECT id, 1, received_at, received_at + 100,
            CASE state WHEN 'done' THEN 'handled' ELSE 'failed' END, last_error
     FROM periskope_inbox_jobs WHERE state IN ('done', 'dead')";

fn millis(time: SystemTime) -> i64 {
    i64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn seed_sqlite(path: &Path, jobs: i64, now: SystemTime) {
    drop(SqliteStore::open(path).expect("create the inbox"));
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute(
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1),
                     params(jobs, now) AS (SELECT ?1, ?2)
                 INSERT INTO periskope_inbox_jobs ({JOB_COLUMNS}) SELECT {} FROM n, params",
                job_values("CAST('{}' AS BLOB)")
            ),
            rusqlite::params![jobs, millis(now)],
        )
        .unwrap();
    connection.execute(ATTEMPTS, []).unwrap();
}

async fn seed_postgres(url: &str, jobs: i64, now: SystemTime) {
    drop(PostgresStore::connect(url).await.expect("create the schema"));
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .execute(
            &format!(
                "INSERT INTO periskope_inbox_jobs ({JOB_COLUMNS})
                 SELECT {} FROM generate_series(1, $1::BIGINT) AS n(i), (SELECT $1::BIGINT, $2::BIGINT) AS params(jobs, now)",
                job_values("'\\x7b7d'::BYTEA")
            ),
            &[&jobs, &millis(now)],
        )
        .await
        .unwrap();
    client.batch_execute(ATTEMPTS).await.unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
}

/// Asks the console for `uri` and waits for the first frame of its answer: what a browser
/// waits for before it can draw anything.
async fn first_byte<St>(console: Console<St>, uri: &'static str) -> Bytes
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    // A console that lets everyone in answers loopback hosts only.
    let request = Request::get(uri).header("host", "127.0.0.1").body(Empty::<Bytes>::new()).unwrap();
    let answer = console.oneshot(request).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "{uri}");
    let frame = answer.into_body().frame().await.expect("a first frame").unwrap();
    frame.into_data().expect("a data frame")
}

fn bench_store<St: ConsoleStore + Clone + Send + Sync + 'static>(
    criterion: &mut Criterion,
    runtime: &Runtime,
    name: &str,
    store: &St,
    jobs: i64,
) {
    let now = SystemTime::now();
    let hour_ago = now - Duration::from_secs(3600);
    let deep = jobs / 10;
    let mut dead = JobFilter::default();
    dead.state = Some(JobState::Dead);
    let pages = [
        ("jobs, first page", JobFilter::default().limit(50)),
        ("jobs, deep page", JobFilter::default().limit(50).before(deep)),
        ("dead jobs, first page", dead.clone().limit(50)),
        ("dead jobs, deep page", dead.limit(50).before(deep)),
    ];
    let mut group = criterion.benchmark_group(format!("console/{name}"));
    group.bench_function("stats", |bench| bench.iter(|| runtime.block_on(store.stats(now)).unwrap()));
    group.bench_function("per_minute, last hour", |bench| {
        bench.iter(|| runtime.block_on(store.per_minute(hour_ago, now)).unwrap())
    });
    group.bench_function("dead_letters_by_event", |bench| {
        bench.iter(|| runtime.block_on(store.dead_letters_by_event(10)).unwrap())
    });
    for (page, filter) in pages {
        let found = runtime.block_on(store.search(filter.clone())).unwrap();
        assert!((1..=50).contains(&found.len()), "{page}: a page of {}", found.len());
        group.bench_with_input(BenchmarkId::from_parameter(page), &filter, |bench, filter| {
            bench.iter(|| runtime.block_on(store.search(filter.clone())).unwrap())
        });
    }
    let console = Console::new(store.clone()).insecure_allow_all();
    for (page, uri) in [("overview", "/"), ("jobs page", "/jobs"), ("dead jobs page", "/jobs?state=dead")] {
        let first = runtime.block_on(first_byte(console.clone(), uri));
        assert!(first.starts_with(b"<!DOCTYPE html>"), "{page}: the page itself");
        group.bench_function(format!("time to first byte, {page}"), |bench| {
            bench.iter(|| runtime.block_on(first_byte(console.clone(), uri)))
        });
    }
    group.finish();
}

/// The signing key of the deliveries.
const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
const WEBHOOK_PATH: &str = "/webhooks/periskope";
const CONSOLE_PREFIX: &str = "/console";
const CONSOLE_TOKEN: &str = "console-bench-token-5d1f0b7a";
/// What each search loop looks for: texts in the key or the last error of a handful of jobs,
/// so that each search reads through the table (no index serves a text).
const SEARCH_TEXTS: [&str; 4] = ["2:m31337", "2:m27182", "2:m16180", "refused%20job%204200"];
/// The bulk purge's filter: the handled jobs, 43 in 50.
const PURGE_FILTER: &str = "state=done";

/// What runs beside the deliveries in one phase of the load.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConsoleLoad {
    Nothing,
    Searches,
    SearchesAndPurge,
}

impl ConsoleLoad {
    fn describe(self) -> &'static str {
        match self {
            ConsoleLoad::Nothing => "deliveries alone",
            ConsoleLoad::Searches => "beside 4 text searches",
            ConsoleLoad::SearchesAndPurge => "beside 4 text searches and a bulk purge",
        }
    }
}

/// How many deliveries each phase sends: `DELIVERY_RATE` a second for a time (benchmarking),
/// or a number (under `cargo test`); a phase with a purge goes on until the purge has
/// answered.
#[derive(Clone, Copy)]
enum Budget {
    Time(Duration),
    Deliveries(u32),
}

impl Budget {
    fn deliveries(self) -> u32 {
        match self {
            Budget::Time(duration) => deliveries_in(duration),
            Budget::Deliveries(deliveries) => deliveries,
        }
    }
}

/// What the phases of one kind measured, each list sorted.
struct Phase {
    load: ConsoleLoad,
    deliveries: Vec<Duration>,
    searches: Vec<Duration>,
    purge: Option<Duration>,
}

impl Phase {
    /// Adds what another phase of the same kind measured.
    fn absorb(&mut self, other: Phase) {
        self.deliveries.extend(other.deliveries);
        self.searches.extend(other.searches);
        self.purge = self.purge.or(other.purge);
        self.deliveries.sort();
        self.searches.sort();
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A console request with the bearer token: its status, once its body has arrived.
async fn console_request(client: &HttpClient, method: Method, url: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header(header::AUTHORIZATION, format!("Bearer {CONSOLE_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .expect("a console request");
    let response = client.request(request).await.expect("the console answers");
    let status = response.status();
    response.into_body().collect().await.expect("the console's page");
    status
}

/// One phase: deliveries on schedule until the budget is spent (and the purge, if any, has
/// answered), with `load` beside them.
async fn run_phase(base: &str, messages: &Arc<UniqueMessages>, load: ConsoleLoad, budget: Budget) -> Phase {
    let searching = Arc::new(AtomicBool::new(true));
    let searches: Vec<_> = if load == ConsoleLoad::Nothing { &[][..] } else { &SEARCH_TEXTS[..] }
        .iter()
        .map(|text| {
            let url = format!("{base}{CONSOLE_PREFIX}/jobs?q={text}");
            let searching = Arc::clone(&searching);
            tokio::spawn(async move {
                let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                let mut latencies = Vec::new();
                while searching.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let status = console_request(&client, Method::GET, &url).await;
                    assert_eq!(status, StatusCode::OK, "a search failed");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let purge = (load == ConsoleLoad::SearchesAndPurge).then(|| {
        let url = format!("{base}{CONSOLE_PREFIX}/jobs/purge?{PURGE_FILTER}");
        tokio::spawn(async move {
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let started = Instant::now();
            let confirmation = console_request(&client, Method::GET, &url).await;
            assert_eq!(confirmation, StatusCode::OK, "the purge's confirmation page");
            let purged = console_request(&client, Method::POST, &url).await;
            assert_eq!(purged, StatusCode::SEE_OTHER, "the purge");
            started.elapsed()
        })
    });

    let url = format!("{base}{WEBHOOK_PATH}");
    let purging = || purge.as_ref().is_some_and(|purge| !purge.is_finished());
    let deliveries = deliver_on_schedule(&url, KEY, messages, budget.deliveries(), purging).await;
    let purge = match purge {
        Some(purge) => Some(purge.await.expect("the purge")),
        None => None,
    };
    let mut phase = Phase { load, deliveries, searches: Vec::new(), purge };
    searching.store(false, Ordering::Relaxed);
    for search in searches {
        phase.searches.extend(search.await.expect("a search loop"));
    }
    phase.searches.sort();
    phase
}

/// The time to the `200` of deliveries on an inbox of `jobs` jobs: `rounds` times alone then
/// beside console searches, interleaved so that the machine's other work weighs on both alike;
/// then beside those and a bulk purge, once, as it leaves few jobs to purge again.
fn acceptance_under_console_load(runtime: &Runtime, jobs: i64, budget: Budget, rounds: usize) {
    let dir = std::env::temp_dir().join(format!("periskope-console-load-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("inbox.db");
    seed_sqlite(&path, jobs, SystemTime::now());
    // The seeded pages written to disk before anything is measured: the kernel writes them
    // back lazily otherwise, and the deliveries' syncs of the first phases wait behind it.
    std::fs::File::open(&path).and_then(|file| file.sync_all()).expect("the seeded file synced");
    let store = SqliteStore::open(&path).expect("the embedded inbox");
    let handled = runtime.block_on(store.stats(SystemTime::now())).expect("stats").done;

    let phases = runtime.block_on(async {
        let inbox = Inbox::new(store.clone());
        let app = Router::new()
            .route_service(WEBHOOK_PATH, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor()))
            .nest_service(CONSOLE_PREFIX, Console::new(store.clone()).bearer_token(CONSOLE_TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let messages = Arc::new(UniqueMessages::new());
        // Connections opened, and the file's pages read once (as the searches read them),
        // before anything is measured: a cold file's first searches wait for the disk, and so
        // do the syncs beside them.
        run_phase(&base, &messages, ConsoleLoad::Nothing, Budget::Deliveries(100)).await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        for text in SEARCH_TEXTS {
            let url = format!("{base}{CONSOLE_PREFIX}/jobs?q={text}");
            assert_eq!(console_request(&client, Method::GET, &url).await, StatusCode::OK, "a search failed");
        }
        let mut alone = run_phase(&base, &messages, ConsoleLoad::Nothing, budget).await;
        let mut searching = run_phase(&base, &messages, ConsoleLoad::Searches, budget).await;
        for _ in 1..rounds {
            alone.absorb(run_phase(&base, &messages, ConsoleLoad::Nothing, budget).await);
            searching.absorb(run_phase(&base, &messages, ConsoleLoad::Searches, budget).await);
        }
        let purging = run_phase(&base, &messages, ConsoleLoad::SearchesAndPurge, budget).await;
        server.abort();
        [alone, searching, purging]
    });
    let left = runtime.block_on(store.stats(SystemTime::now())).expect("stats").done;
    assert_eq!(left, 0, "the purge took every handled job");

    println!(
        "\nTime to the 200 of deliveries ({DELIVERY_RATE}/s on schedule, loopback HTTP/1.1), SQLite inbox of {jobs} \
         jobs, synchronous=FULL; {rounds} rounds of the first two phases"
    );
    println!("| deliveries | answered | p50 | p99 | max | p99 / alone | searches (p50) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let alone = quantile(&phases[0].deliveries, 0.99).as_secs_f64();
    for phase in &phases {
        let p99 = quantile(&phase.deliveries, 0.99);
        let ratio = if phase.load == ConsoleLoad::Nothing {
            String::new()
        } else {
            format!("{:.2}x", p99.as_secs_f64() / alone)
        };
        let searches = if phase.searches.is_empty() {
            "-".to_owned()
        } else {
            format!("{} ({})", phase.searches.len(), ms(quantile(&phase.searches, 0.5)))
        };
        println!(
            "| {} | {} | {} | {} | {} | {ratio} | {searches} |",
            phase.load.describe(),
            phase.deliveries.len(),
            ms(quantile(&phase.deliveries, 0.5)),
            ms(p99),
            ms(*phase.deliveries.last().expect("deliveries")),
        );
    }
    if let Some(purge) = phases[2].purge {
        println!("the purge of {handled} handled jobs answered in {}", ms(purge));
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let jobs: i64 = std::env::var("CONSOLE_BENCH_JOBS")
        .ok()
        .and_then(|jobs| jobs.parse().ok())
        .unwrap_or(if benchmarking { 1_000_000 } else { 1_000 });
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let now = SystemTime::now();

    postgres::remove_abandoned_dirs("periskope-console-");
    let dir = std::env::temp_dir().join(format!("periskope-console-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("inbox.db");
    seed_sqlite(&path, jobs, now);
    let sqlite = SqliteStore::open(&path).expect("the embedded inbox");
    bench_store(&mut criterion, &runtime, "sqlite", &sqlite, jobs);
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);

    if let Some(database) = postgres::cluster().map(postgres::Cluster::database) {
        let store = runtime.block_on(async {
            seed_postgres(&database.url(), jobs, now).await;
            PostgresStore::connect(&database.url()).await.expect("the PostgreSQL inbox")
        });
        bench_store(&mut criterion, &runtime, "postgres", &store, jobs);
        drop(store);
    }
    criterion.final_summary();

    if benchmarking {
        let seconds = std::env::var("CONSOLE_BENCH_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
        acceptance_under_console_load(&runtime, 400_000, Budget::Time(Duration::from_secs(seconds)), 3);
    } else {
        acceptance_under_console_load(&runtime, 2_000, Budget::Deliveries(100), 1);
    }
}
