//! The console on an inbox of 1,000,000 jobs, on the embedded SQLite store and on PostgreSQL
//! (a throw-away cluster on a free port, skipped when PostgreSQL 15 is not installed):
//! - the queries behind its pages: the overview's (`stats`, `per_minute` over the last hour,
//!   `dead_letters_by_event`) and the jobs page's (its first page and a deep keyset page, each
//!   with and without a state filter);
//! - time to first byte of the overview, the jobs page and the dead jobs page: from the request
//!   handed to [`Console`] to the first frame of its body, every query and the rendering
//!   included (the socket's own cost, a few tens of microseconds on loopback, is not).
//!
//! `cargo bench --bench console --profile release --all-features` (`--profile release` skips
//! fat LTO); `CONSOLE_BENCH_JOBS` changes the size. Under `cargo test --benches` (`--bench`
//! absent) the inbox holds 1,000 jobs and each query runs once, to check that the benchmark
//! works.
//!
//! The inbox is written directly in SQL, in the stores' own schema (created by opening them):
//! the jobs were received over the last 24 hours, one in fifty is dead (eight event names,
//! 1,000 chats), six in fifty pending, the rest handled; each settled job has one attempt. The
//! SQLite file is not `ANALYZE`d, as the store never does; PostgreSQL's is, as autovacuum would
//! after such a load.

#[allow(dead_code)] // Only the cluster and its databases are used.
#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ConsoleStore, JobFilter, JobState, PostgresStore, SqliteStore};
use tokio::runtime::Runtime;
use tower::ServiceExt;

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
}
