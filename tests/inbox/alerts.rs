//! `Inbox::on_alert`: each alert on every store that can raise it. Dead letters are told at
//! least once each, across a worker's restart, again when a callback failed and when a retried
//! job dies again, never twice once told, with phone numbers masked; a full SQLite file is told
//! once, over HTTP; a backlog is told on crossing and on clearing; a callback that never
//! answers delays no job.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::inbox::{
    Alert, ClaimRequest, Inbox, InboxStore, JobId, JobState, MemoryInboxStore, PostgresStore, Selection,
    SqliteStore, WorkerConfig,
};
use periskope_webhook::{EventKind, PeriskopeWebhookLayer, WebhookEvent};
use tokio::sync::{Notify, mpsc};
use tower::{Layer, service_fn};

use crate::common::postgres::cluster;
use crate::common::{self, KEY, Stack, client, send, signed, within};
use crate::support::{TempDir, all_in, chat_message, delivery, fast, wait_for_jobs};

/// The phone number the failing handler's error carries, which no alert may.
const PHONE: &str = "919999912345";

/// An inbox over `store` whose alerts arrive on the returned channel; the callback fails its
/// first `failures` calls (each still arrives).
fn alerting<St: InboxStore>(store: St, failures: usize) -> (Inbox<St>, mpsc::UnboundedReceiver<Alert>) {
    let (sender, alerts) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let inbox = Inbox::new(store).on_alert(move |alert: Alert| {
        let _ = sender.send(alert);
        let call = calls.fetch_add(1, Ordering::SeqCst);
        async move { if call < failures { Err(std::io::Error::other("the pager is down")) } else { Ok(()) } }
    });
    (inbox, alerts)
}

async fn next(alerts: &mut mpsc::UnboundedReceiver<Alert>) -> Alert {
    within("an alert", alerts.recv()).await.expect("the alert channel is open")
}

/// A handler that fails every attempt with an error naming a phone number.
async fn failing(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    Err(std::io::Error::other(format!("CRM refused contact {PHONE}@c.us")))
}

/// Waits until every dead letter of `store` was marked told (after its callback answered).
async fn all_told<St: InboxStore>(store: &St) {
    within("every dead letter marked told", async {
        while !store.unalerted_dead_letters(10).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Stores `id` and makes it a dead letter straight away, as a worker that died before it could
/// tell would have: no alert task runs.
async fn dead_without_alert<St: InboxStore>(store: &St, id: &str) -> JobId {
    store.insert(delivery(chat_message(id, id))).await.unwrap();
    let claimed = store.claim(ClaimRequest::new(1, Duration::from_secs(60), 1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.fail(claimed[0].lease(), format!("gave up on {PHONE}@c.us"), None).await.unwrap();
    claimed[0].id
}

fn assert_dead_letter(alert: &Alert, job: JobId, attempts: u32) {
    let Alert::DeadLetter { kind, job: told, attempts: told_attempts, last_error } = alert else {
        panic!("not a dead letter: {alert:?}")
    };
    assert_eq!((*kind, *told, *told_attempts), (EventKind::MessageCreated, job, attempts), "{alert:?}");
    let error = last_error.as_deref().expect("the last error");
    assert!(error.contains("*@c.us") && !error.contains(PHONE), "{error}");
    assert!(!alert.to_string().contains(PHONE), "{alert}");
}

/// The dead-letter case, on any store: see the module's description.
async fn dead_letters_are_told_once_each<St: InboxStore>(store: St) {
    let before_start = dead_without_alert(&store, "before-start").await;

    // The first call fails: the same dead letter is told again, then marked told.
    let (inbox, mut alerts) = alerting(store.clone(), 1);
    let mut config = fast();
    config.max_attempts = 2;
    let worker = inbox.worker(service_fn(failing)).config(config.clone()).spawn();
    assert_dead_letter(&next(&mut alerts).await, before_start, 1);
    assert_dead_letter(&next(&mut alerts).await, before_start, 1);

    store.insert(delivery(chat_message("by-worker", "by-worker"))).await.unwrap();
    let by_worker = match next(&mut alerts).await {
        alert @ Alert::DeadLetter { job, .. } => {
            assert_dead_letter(&alert, job, 2);
            job
        }
        other => panic!("not a dead letter: {other:?}"),
    };
    all_told(&store).await;
    worker.shutdown().await.unwrap();

    // A new worker tells only what was not told: the first alert it sends is the new one.
    let after_restart = dead_without_alert(&store, "after-restart").await;
    let (inbox, mut alerts) = alerting(store.clone(), 0);
    let worker = inbox.worker(service_fn(failing)).config(config).spawn();
    assert_dead_letter(&next(&mut alerts).await, after_restart, 1);

    // A retried job that dies again is told again.
    assert_eq!(store.retry(Selection::Job(by_worker), SystemTime::now()).await.unwrap(), 1);
    assert_dead_letter(&next(&mut alerts).await, by_worker, 2);
    all_told(&store).await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn dead_letters_are_told_once_each_in_memory() {
    dead_letters_are_told_once_each(MemoryInboxStore::new()).await;
}

#[tokio::test]
async fn dead_letters_are_told_once_each_on_sqlite() {
    let dir = TempDir::new("alert-dead");
    dead_letters_are_told_once_each(SqliteStore::open(dir.db()).unwrap()).await;
}

#[tokio::test]
async fn dead_letters_are_told_once_each_on_postgres() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    dead_letters_are_told_once_each(PostgresStore::connect(&database.url()).await.unwrap()).await;
}

/// The backlog case, on any store: a job received an hour ago, held running by its handler,
/// is a backlog; once handled, the backlog clears.
async fn a_backlog_is_told_on_crossing_and_clearing<St: InboxStore>(store: St) {
    let (inbox, mut alerts) = alerting(store.clone(), 0);
    let inbox = inbox.backlog_alert_after(Duration::from_secs(1));
    let release = Arc::new(Notify::new());
    let handler = {
        let release = Arc::clone(&release);
        service_fn(move |_: Request<Full<Bytes>>| {
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
            }
        })
    };
    let mut old = delivery(chat_message("old", "old"));
    old.received_at = SystemTime::now() - Duration::from_secs(60 * 60);
    store.insert(old).await.unwrap();
    let worker = inbox.worker(handler).config(fast()).spawn();

    match next(&mut alerts).await {
        Alert::Backlog { oldest_pending } => assert!(oldest_pending >= Duration::from_secs(60 * 60)),
        other => panic!("not a backlog: {other:?}"),
    }
    wait_for_jobs(&store, "the old job runs", all_in(JobState::Running)).await;
    release.notify_one();
    assert_eq!(next(&mut alerts).await, Alert::BacklogCleared);
    wait_for_jobs(&store, "the old job is handled", all_in(JobState::Done)).await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_backlog_is_told_on_crossing_and_clearing_in_memory() {
    a_backlog_is_told_on_crossing_and_clearing(MemoryInboxStore::new()).await;
}

#[tokio::test]
async fn a_backlog_is_told_on_crossing_and_clearing_on_sqlite() {
    let dir = TempDir::new("alert-backlog");
    a_backlog_is_told_on_crossing_and_clearing(SqliteStore::open(dir.db()).unwrap()).await;
}

#[tokio::test]
async fn a_backlog_is_told_on_crossing_and_clearing_on_postgres() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    a_backlog_is_told_on_crossing_and_clearing(PostgresStore::connect(&database.url()).await.unwrap()).await;
}

/// Over HTTP: a capped file refuses deliveries once full (`503 inbox_full`), and that is told
/// once: after more refusals, the next alert is a dead letter that died after them.
#[tokio::test]
async fn a_full_store_is_told_once() {
    let dir = TempDir::new("alert-full");
    let store = SqliteStore::options().max_size(128 * 1024).open(dir.db()).unwrap();
    let (inbox, mut alerts) = alerting(store.clone(), 0);
    // The `doomed` job waits in its handler until told to fail: it dies after the refusals.
    let doom = Arc::new(Notify::new());
    let handler = {
        let doom = Arc::clone(&doom);
        service_fn(move |request: Request<Full<Bytes>>| {
            let doom = Arc::clone(&doom);
            async move {
                let event = request.extensions().get::<WebhookEvent>().expect("the event");
                if event.event().message().and_then(|message| message.message_id.as_deref()) == Some("doomed")
                {
                    doom.notified().await;
                    return Err(std::io::Error::other("doomed"));
                }
                Ok(Response::new(Full::<Bytes>::default()))
            }
        })
    };
    let mut config = WorkerConfig::default();
    config.max_attempts = 1;
    config.poll_interval = Duration::from_millis(10);
    let worker = inbox.worker(handler).config(config).spawn();
    let server = common::serve(Stack::Axum, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor())).await;
    let client = client();
    send(&client, signed(&server.url, KEY, chat_message("doomed", "doomed")))
        .await
        .assert(StatusCode::OK, "accepted");
    wait_for_jobs(&store, "the doomed job runs", |jobs| {
        jobs.iter().any(|job| job.state == JobState::Running)
    })
    .await;

    let padding = "x".repeat(2000);
    let refused_body = within("the capped file fills", async {
        let mut n = 0;
        loop {
            let body = Bytes::from(format!(
                r#"{{"event":"message.created","data":{{"message_id":"m{n}","chat_id":"c{n}","body":"{padding}"}}}}"#
            ));
            if send(&client, signed(&server.url, KEY, body.clone())).await.status == StatusCode::SERVICE_UNAVAILABLE {
                break body;
            }
            n += 1;
        }
    })
    .await;
    assert_eq!(next(&mut alerts).await, Alert::StoreFull);
    // The same delivery, sent again as Periskope would, is refused again (it was never stored).
    for _ in 0..3 {
        send(&client, signed(&server.url, KEY, refused_body.clone()))
            .await
            .assert(StatusCode::SERVICE_UNAVAILABLE, "inbox_full");
    }
    doom.notify_one();
    match next(&mut alerts).await {
        Alert::DeadLetter { kind: EventKind::MessageCreated, attempts: 1, .. } => {}
        other => panic!("told after the refusals: {other:?}"),
    }
    server.stop().await;
    worker.shutdown().await.unwrap();
}

/// A callback that never answers holds its alert task only: the worker goes on handling jobs.
#[tokio::test]
async fn a_callback_that_never_answers_delays_no_job() {
    let store = MemoryInboxStore::new();
    let (sender, mut alerts) = mpsc::unbounded_channel();
    let inbox = Inbox::new(store.clone()).on_alert(move |alert: Alert| {
        let _ = sender.send(alert);
        std::future::pending::<Result<(), Infallible>>()
    });
    dead_without_alert(&store, "stuck").await;
    let handled = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let worker = inbox.worker(handled).config(fast()).spawn();
    assert!(matches!(next(&mut alerts).await, Alert::DeadLetter { .. }));
    for n in 0..5 {
        store.insert(delivery(chat_message(&format!("c{n}"), &format!("m{n}")))).await.unwrap();
    }
    wait_for_jobs(&store, "the jobs are handled while the callback hangs", |jobs| {
        jobs.iter().filter(|job| job.state == JobState::Done).count() == 5
    })
    .await;
    worker.shutdown().await.unwrap();
}
