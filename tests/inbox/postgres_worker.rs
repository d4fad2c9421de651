//! The worker on the PostgreSQL store against a real server: the generic worker cases, store
//! calls blocked by a lock (bounded in time, and never holding up the shutdown), and the
//! schema's upgrade.

use std::sync::Arc;
use std::time::Duration;

use periskope_webhook::inbox::{ClaimRequest, Inbox, InboxStore, PostgresStore, WorkerConfig};
use periskope_webhook::{EventRouter, WebhookEvent};
use tokio::sync::oneshot;

use crate::common::postgres::{Database, cluster};
use crate::common::within;
use crate::support::{CapturedLog, chat_message, delivery};

/// A fresh database and a store connected to it; `None` when PostgreSQL is not available.
async fn store() -> Option<(Database, PostgresStore)> {
    let database = cluster()?.database();
    let store = PostgresStore::connect(&database.url()).await.expect("connect to the test database");
    Some((database, store))
}

macro_rules! generic_worker_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some((_database, store)) = store().await else { return };
                crate::worker::$case(store).await;
            }
        )*
    };
}

/// The store cases of `store.rs` that came with the worker's dead-letter retention.
macro_rules! generic_store_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some((_database, store)) = store().await else { return };
                crate::store::$case(store).await;
            }
        )*
    };
}

generic_store_cases!(dead_letters_are_purged_by_when_they_died);

generic_worker_cases!(
    unbounded_durations_in_the_configuration_still_handle_jobs,
    a_router_that_routes_only_the_webhook_path_handles_the_job,
    dead_letters_are_purged_after_their_retention,
);

/// Another session holds the jobs table locked, so the worker's claim waits on the server; the
/// worker still sees its shutdown and returns within its grace period (plus slack), instead of
/// waiting for the lock.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_seen_while_a_store_call_waits_for_a_lock() {
    let Some((database, store)) = store().await else { return };
    let (locker, connection) = tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    locker.batch_execute("BEGIN; LOCK TABLE periskope_inbox_jobs IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let grace = Duration::from_millis(200);
    let mut config = WorkerConfig::default();
    config.shutdown_grace = grace;
    config.poll_interval = Duration::from_millis(10);
    let router = EventRouter::new()
        .on_message_created(|_: WebhookEvent| async { Ok::<_, std::convert::Infallible>(()) });
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(Inbox::new(store).worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    within("the worker's claim waits for the lock", async {
        loop {
            let waiting: i64 = locker
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let _ = stop.send(());
    let returned = tokio::time::timeout(grace + Duration::from_secs(2), worker).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        returned.is_ok(),
        "run did not return within the grace period plus 2 s while the table was locked"
    );
}

/// A database written by version 1 of the schema (0.1's), made here by hand, is upgraded on
/// connect: its jobs keep everything and run on the path `/`, which is what they ran on.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_database_is_upgraded() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let (v1, connection) = tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    v1.batch_execute(
        "CREATE TABLE periskope_inbox_schema (version INTEGER NOT NULL);
         CREATE TABLE periskope_inbox_jobs (
             id BIGSERIAL PRIMARY KEY, dedup_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
             ordering_key TEXT, body BYTEA NOT NULL, signing_key TEXT, received_at BIGINT NOT NULL,
             state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
             run_at BIGINT NOT NULL, lease_until BIGINT, last_error TEXT, handled_at BIGINT);
         CREATE INDEX periskope_inbox_due ON periskope_inbox_jobs (state, run_at);
         CREATE INDEX periskope_inbox_order ON periskope_inbox_jobs (ordering_key, id)
             WHERE ordering_key IS NOT NULL;
         CREATE INDEX periskope_inbox_handled ON periskope_inbox_jobs (handled_at) WHERE state = 'done';
         INSERT INTO periskope_inbox_schema (version) VALUES (1);
         INSERT INTO periskope_inbox_jobs (dedup_key, event, ordering_key, body, received_at, run_at)
             VALUES ('message.created|2:m1', 'message.created', 'chat|c',
                     convert_to('{\"event\":\"message.created\",\"data\":{\"message_id\":\"m1\"}}', 'UTF8'), 0, 0);",
    )
    .await
    .unwrap();

    let store = PostgresStore::connect_with(&database.url(), 1).await.unwrap();
    let version: i32 =
        v1.query_one("SELECT max(version) FROM periskope_inbox_schema", &[]).await.unwrap().get(0);
    assert_eq!(version, 9, "upgraded to the current version");
    let record = store.get(1).await.unwrap().unwrap();
    assert_eq!((record.summary.key.as_str(), record.path.as_str()), ("message.created|2:m1", "/"));
    let claimed = store.claim(ClaimRequest::new(10, Duration::from_secs(60), 3)).await.unwrap();
    assert_eq!((claimed.len(), claimed[0].path.as_str()), (1, "/"));
    assert_eq!(claimed[0].traceparent, None, "no accepting context before v7");
    store.insert(delivery(chat_message("c", "after-upgrade"))).await.unwrap();
}

/// A store call that hangs (here: the jobs table locked by another session) fails after
/// `store_timeout`, for claims and for settling an attempt alike, and says so at ERROR.
#[tokio::test]
async fn store_calls_that_hang_fail_after_the_store_timeout() {
    let Some((database, store)) = store().await else { return };
    let (captured, _guard) = CapturedLog::start();
    let log = || captured.text();

    store.insert(delivery(chat_message("c", "slow"))).await.unwrap();
    let (locker, connection) = tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let (started, mut has_started) = tokio::sync::mpsc::unbounded_channel();
    let proceed = Arc::new(tokio::sync::Notify::new());
    let router = {
        let proceed = Arc::clone(&proceed);
        EventRouter::new().on_message_created(move |_: WebhookEvent| {
            let (started, proceed) = (started.clone(), Arc::clone(&proceed));
            async move {
                let _ = started.send(());
                proceed.notified().await;
                Ok::<_, std::convert::Infallible>(())
            }
        })
    };
    let mut config = WorkerConfig::default();
    config.poll_interval = Duration::from_millis(10);
    config.store_timeout = Duration::from_millis(300);
    config.shutdown_grace = Duration::from_millis(100);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(Inbox::new(store).worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    within("the handler starts", has_started.recv()).await;
    locker.batch_execute("BEGIN; LOCK TABLE periskope_inbox_jobs IN ACCESS EXCLUSIVE MODE").await.unwrap();
    proceed.notify_one();
    within("both kinds of calls time out", async {
        loop {
            let log = log();
            let timed_out = |what: &str| {
                log.lines().any(|line| line.contains(what) && line.contains("did not answer within 300ms"))
            };
            if timed_out("could not claim jobs") && timed_out("could not record an attempt") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    locker.batch_execute("ROLLBACK").await.unwrap();
}
