//! The worker on the embedded store: attempts told to the handler, retries with backoff, dead
//! letters after errors, panics and timeouts, in-order handling per chat, graceful shutdown,
//! and the whole path from an HTTP delivery to the handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::routing::post;
use axum::{Extension, Router};
use http::StatusCode;
use periskope_webhook::inbox::{
    Attempt, ClaimRequest, ClaimedJob, Inbox, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobState,
    JobSummary, Lease, ListQuery, NewDelivery, Selection, SqliteStore, UnalertedDeadLetter,
};
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent};
use tokio::sync::oneshot;
use tower::Layer;

use crate::common::{self, KEY, Stack, client, send, signed, within};
use crate::support::{CapturedLog, TempDir, all_in, chat_message, delivery, fast, key_of, wait_for_jobs};

#[tokio::test]
async fn failed_attempts_are_retried_with_the_attempt_number_and_error_recorded() {
    let dir = TempDir::new("retry");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    inbox.store().insert(delivery(chat_message("c", "m1"))).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        Router::new().route(
            "/",
            post(move |Extension(attempt): Extension<Attempt>, event: WebhookEvent| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push((attempt.number(), attempt.is_last(), event.name().to_owned()));
                    if attempt.number() < 3 { StatusCode::BAD_GATEWAY } else { StatusCode::OK }
                }
            }),
        )
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).config(fast()).run(async {
        let _ = stopped.await;
    }));
    let jobs = wait_for_jobs(inbox.store(), "the job is handled", all_in(JobState::Done)).await;
    assert_eq!(jobs[0].attempts, 3);
    assert_eq!(jobs[0].last_error.as_deref(), Some("the handler answered 502 Bad Gateway"));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, false, "message.created".to_owned()),
            (2, false, "message.created".to_owned()),
            (3, true, "message.created".to_owned())
        ]
    );
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
}

#[tokio::test]
async fn an_event_router_handler_can_take_the_attempt() {
    let dir = TempDir::new("router-attempt");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    let body = chat_message("c", "m1");
    inbox.store().insert(delivery(body.clone())).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = {
        let seen = Arc::clone(&seen);
        EventRouter::new().on_message_created(move |event: WebhookEvent, attempt: Attempt| {
            let seen = Arc::clone(&seen);
            async move {
                let number = attempt.number();
                seen.lock().unwrap().push((event.name().to_owned(), attempt));
                if number < 2 { Err("the CRM is down") } else { Ok(()) }
            }
        })
    };
    inbox.worker(router).config(fast()).run_until_idle().await;

    let jobs = inbox.store().list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!((jobs.len(), jobs[0].state), (1, JobState::Done));
    let seen = seen.lock().unwrap();
    let [(first_event, first), (second_event, second)] = &seen[..] else { panic!("two attempts: {seen:?}") };
    assert_eq!((first_event.as_str(), second_event.as_str()), ("message.created", "message.created"));
    assert_eq!((first.job(), second.job()), (jobs[0].id, jobs[0].id));
    assert_eq!((first.key(), second.key()), (key_of(&body).as_str(), key_of(&body).as_str()));
    assert_eq!((first.number(), second.number()), (1, 2));
    assert!(second.fencing_token() > first.fencing_token(), "{first:?} then {second:?}");
}

#[tokio::test]
async fn errors_panics_and_timeouts_fail_attempts_until_a_dead_letter() {
    let dir = TempDir::new("dead");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    for id in ["error", "panic", "slow"] {
        inbox.store().insert(delivery(chat_message(id, id))).await.unwrap();
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let router = {
        let calls = Arc::clone(&calls);
        EventRouter::new().on_message_created(move |event: WebhookEvent| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let id = event
                    .event()
                    .message()
                    .and_then(|m| m.message_id.as_deref())
                    .unwrap_or_default()
                    .to_owned();
                match id.as_str() {
                    "error" => Err("the CRM is down".to_owned()),
                    "panic" => panic!("handler bug"),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(())
                    }
                }
            }
        })
    };
    let mut config = fast();
    config.attempt_timeout = Duration::from_millis(50);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    let jobs = wait_for_jobs(inbox.store(), "three dead letters", all_in(JobState::Dead)).await;
    let error = |key: &str| {
        let job = jobs.iter().find(|job| job.key == key_of(&chat_message(key, key))).unwrap();
        assert_eq!(job.attempts, 3, "{job:?}");
        job.last_error.clone().unwrap()
    };
    assert_eq!(error("error"), "the message.created handler failed: the CRM is down");
    assert_eq!(error("panic"), "the handler panicked: handler bug");
    assert_eq!(error("slow"), "the attempt timed out after 50ms");
    assert_eq!(calls.load(Ordering::SeqCst), 9);
    let stats = inbox.store().stats(std::time::SystemTime::now()).await.unwrap();
    assert_eq!((stats.dead, stats.queue_depth()), (3, 0));
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
}

#[tokio::test]
async fn jobs_of_a_chat_are_handled_in_order_and_chats_concurrently() {
    let dir = TempDir::new("ordering");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    const CHATS: usize = 4;
    const PER_CHAT: usize = 15;
    for n in 0..PER_CHAT {
        for chat in 0..CHATS {
            inbox
                .store()
                .insert(delivery(chat_message(&format!("chat{chat}"), &format!("{chat}-{n}"))))
                .await
                .unwrap();
        }
    }
    let handled = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let router = {
        let (handled, running, most) = (Arc::clone(&handled), Arc::clone(&running), Arc::clone(&most));
        EventRouter::new().on_message_created(move |event: WebhookEvent| {
            let (handled, running, most) = (Arc::clone(&handled), Arc::clone(&running), Arc::clone(&most));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let id = event.event().message().and_then(|m| m.message_id.as_deref()).unwrap().to_owned();
                // Uneven work, so that a worker free to reorder would.
                let (chat, n) = id.split_once('-').unwrap();
                let n: usize = n.parse().unwrap();
                tokio::time::sleep(Duration::from_millis(((n * 7 + chat.len()) % 5) as u64)).await;
                // The third job of chat 0 fails once: its successors must wait for its retry.
                let first_failure =
                    chat == "0" && n == 2 && !handled.lock().unwrap().contains(&"fail".to_owned());
                running.fetch_sub(1, Ordering::SeqCst);
                if first_failure {
                    handled.lock().unwrap().push("fail".to_owned());
                    return Err("once");
                }
                handled.lock().unwrap().push(id);
                Ok(())
            }
        })
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(fast()).run(async {
        let _ = stopped.await;
    }));
    wait_for_jobs(inbox.store(), "all handled", |jobs| {
        jobs.len() == CHATS * PER_CHAT && all_in(JobState::Done)(jobs)
    })
    .await;
    let handled = handled.lock().unwrap().clone();
    for chat in 0..CHATS {
        let order: Vec<&String> = handled.iter().filter(|id| id.starts_with(&format!("{chat}-"))).collect();
        let expected: Vec<String> = (0..PER_CHAT).map(|n| format!("{chat}-{n}")).collect();
        assert_eq!(order, expected.iter().collect::<Vec<_>>(), "chat {chat} out of order");
    }
    assert!(most.load(Ordering::SeqCst) > 1, "different chats never ran concurrently");
    assert!(most.load(Ordering::SeqCst) <= CHATS, "two jobs of one chat ran at once");
    // The jobs claimed in a run behind the one that failed were given back uncounted.
    let jobs = inbox.store().list(ListQuery::new(None, 100)).await.unwrap();
    let failed_once = key_of(&chat_message("chat0", "0-2"));
    for job in &jobs {
        let expected = if job.key == failed_once { 2 } else { 1 };
        assert_eq!(job.attempts, expected, "attempts of {}", job.key);
    }
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
}

#[tokio::test]
async fn shutdown_gives_back_the_jobs_of_a_run_it_did_not_start() {
    let dir = TempDir::new("run-shutdown");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    for id in ["m0", "m1", "m2", "m3"] {
        inbox.store().insert(delivery(chat_message("chat", id))).await.unwrap();
    }
    let (entered, mut first_running) = tokio::sync::mpsc::unbounded_channel::<String>();
    let router = EventRouter::new().on_message_created(move |event: WebhookEvent| {
        let id = event.event().message().and_then(|m| m.message_id.as_deref()).unwrap().to_owned();
        let _ = entered.send(id);
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::convert::Infallible>(())
        }
    });
    let mut config = fast();
    config.concurrency = 1;
    config.shutdown_grace = Duration::from_secs(5);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    let first = within("the run starts", first_running.recv()).await.unwrap();
    assert_eq!(first, "m0");
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    assert!(first_running.try_recv().is_err(), "a job of the run started after shutdown began");
    let jobs = inbox.store().list(ListQuery::new(None, 10)).await.unwrap();
    let states: Vec<(JobState, u32)> = jobs.iter().map(|job| (job.state, job.attempts)).collect();
    assert_eq!(
        states,
        [(JobState::Done, 1), (JobState::Pending, 0), (JobState::Pending, 0), (JobState::Pending, 0)],
        "m0 finished within the grace period; the rest of its run was given back, uncounted"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_quick_jobs_and_releases_the_rest() {
    let dir = TempDir::new("shutdown");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    inbox.store().insert(delivery(chat_message("quick", "quick"))).await.unwrap();
    inbox.store().insert(delivery(chat_message("stuck", "stuck"))).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let router = {
        let started = Arc::clone(&started);
        EventRouter::new().on_message_created(move |event: WebhookEvent| {
            started.fetch_add(1, Ordering::SeqCst);
            async move {
                let stuck = event.event().message().and_then(|m| m.message_id.as_deref()) == Some("stuck");
                tokio::time::sleep(if stuck { Duration::from_secs(60) } else { Duration::from_millis(200) })
                    .await;
                Ok::<_, std::convert::Infallible>(())
            }
        })
    };
    let mut config = fast();
    config.shutdown_grace = Duration::from_millis(500);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    within("both start", async {
        while started.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    let jobs = inbox.store().list(ListQuery::new(None, 10)).await.unwrap();
    let state = |key: &str| {
        let job = jobs.iter().find(|job| job.key == key_of(&chat_message(key, key))).unwrap();
        (job.state, job.attempts)
    };
    assert_eq!(state("quick"), (JobState::Done, 1), "finished within the grace period");
    assert_eq!(state("stuck"), (JobState::Pending, 0), "released, its attempt not counted");
}

#[tokio::test]
async fn a_delivery_over_http_reaches_the_handler_from_storage() {
    let dir = TempDir::new("e2e");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
    let router = EventRouter::new().on_message_created(move |event: WebhookEvent| {
        let _ = seen.send(event.body().clone());
        async { Ok::<_, std::convert::Infallible>(()) }
    });
    let mut config = fast();
    // Only the acceptor's wake-up can bring the job in quickly.
    config.poll_interval = Duration::from_secs(60);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    let server = common::serve(Stack::Axum, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor())).await;
    // Let the worker's first (empty) claim pass, so that the job below arrives while it waits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let body = chat_message("c", "over-http");
    send(&client(), signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "accepted");
    assert_eq!(within("the handler runs", received.recv()).await, Some(body));
    wait_for_jobs(inbox.store(), "the job is done", all_in(JobState::Done)).await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    server.stop().await;
}

/// The generic worker cases on the embedded store; `postgres_worker.rs` runs them on PostgreSQL.
mod sqlite {
    use periskope_webhook::inbox::SqliteStore;

    use crate::support::TempDir;

    #[tokio::test]
    async fn unbounded_durations_in_the_configuration_still_handle_jobs() {
        let dir = TempDir::new("max-config");
        super::unbounded_durations_in_the_configuration_still_handle_jobs(
            SqliteStore::open(dir.db()).unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn dead_letters_are_purged_after_their_retention() {
        let dir = TempDir::new("dead-retention");
        super::dead_letters_are_purged_after_their_retention(SqliteStore::open(dir.db()).unwrap()).await;
    }

    #[tokio::test]
    async fn a_router_that_routes_only_the_webhook_path_handles_the_job() {
        let dir = TempDir::new("path");
        super::a_router_that_routes_only_the_webhook_path_handles_the_job(
            SqliteStore::open(dir.db()).unwrap(),
        )
        .await;
    }
}

/// No configuration value can panic the worker or the store: a lease, an attempt timeout, a
/// backoff and a retention of `Duration::MAX` (a natural "no limit") still handle jobs, a failed
/// attempt waits (for ever) instead of overflowing, and the store keeps accepting deliveries.
pub async fn unbounded_durations_in_the_configuration_still_handle_jobs<St: InboxStore>(store: St) {
    let inbox = Inbox::new(store);
    inbox.store().insert(delivery(chat_message("ok", "ok-1"))).await.unwrap();
    inbox.store().insert(delivery(chat_message("fails", "fails"))).await.unwrap();
    let router = EventRouter::new().on_message_created(|event: WebhookEvent| async move {
        match event.event().message().and_then(|m| m.chat_id.as_deref()) {
            Some("fails") => Err("the CRM is down"),
            _ => Ok(()),
        }
    });
    let mut config = fast();
    config.lease = Duration::MAX;
    config.attempt_timeout = Duration::MAX;
    config.backoff_base = Duration::MAX;
    config.backoff_max = Duration::MAX;
    config.retention = Duration::MAX;
    config.store_timeout = Duration::MAX;
    config.shutdown_grace = Duration::MAX;
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    let handled = |jobs: &[periskope_webhook::inbox::JobSummary]| {
        jobs.iter().any(|job| job.state == JobState::Done)
            && jobs.iter().any(|job| job.state == JobState::Pending && job.attempts == 1)
    };
    let jobs = wait_for_jobs(inbox.store(), "one job handled, the other backing off", handled).await;
    let waiting = jobs.iter().find(|job| job.state == JobState::Pending).unwrap();
    let year = Duration::from_secs(365 * 24 * 60 * 60);
    assert!(waiting.run_at > std::time::SystemTime::now() + year, "{waiting:?}");

    // The store still accepts, and the worker still runs.
    let later = delivery(chat_message("ok", "ok-2"));
    assert_eq!(inbox.store().insert(later).await.unwrap(), periskope_webhook::inbox::Stored::New);
    wait_for_jobs(inbox.store(), "the later job is handled", |jobs| {
        jobs.iter().filter(|job| job.state == JobState::Done).count() == 2
    })
    .await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
}

/// The worker calls the handler with the path the delivery arrived on: an axum `Router` with a
/// route only at the webhook path handles the job.
pub async fn a_router_that_routes_only_the_webhook_path_handles_the_job<St: InboxStore>(store: St) {
    let inbox = Inbox::new(store);
    let paths = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let paths = Arc::clone(&paths);
        Router::new().route(
            common::PATH,
            post(move |uri: http::Uri| {
                let paths = Arc::clone(&paths);
                async move {
                    paths.lock().unwrap().push(uri.path().to_owned());
                    StatusCode::OK
                }
            }),
        )
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).config(fast()).run(async {
        let _ = stopped.await;
    }));
    let server = common::serve(Stack::Axum, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor())).await;
    send(&client(), signed(&server.url, KEY, chat_message("c", "routed")))
        .await
        .assert(StatusCode::OK, "accepted");
    let jobs = wait_for_jobs(inbox.store(), "the job is handled or dead", |jobs| {
        !jobs.is_empty() && jobs.iter().all(|job| matches!(job.state, JobState::Done | JobState::Dead))
    })
    .await;
    assert_eq!(jobs[0].state, JobState::Done, "{jobs:?}");
    assert_eq!(*paths.lock().unwrap(), [common::PATH]);
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    server.stop().await;
}

/// With `dead_retention`, the worker purges a dead letter once it has been dead that long
/// (without it, dead letters stay: `errors_panics_and_timeouts_fail_attempts_until_a_dead_letter`).
pub async fn dead_letters_are_purged_after_their_retention<St: InboxStore>(store: St) {
    let inbox = Inbox::new(store);
    inbox.store().insert(delivery(chat_message("c", "doomed"))).await.unwrap();
    let router =
        EventRouter::new().on_message_created(|_: WebhookEvent| async { Err::<(), _>("the CRM is down") });
    let mut config = fast();
    config.max_attempts = 1;
    config.dead_retention = Some(Duration::from_secs(1));
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    wait_for_jobs(inbox.store(), "a dead letter", all_in(JobState::Dead)).await;
    wait_for_jobs(inbox.store(), "the dead letter is purged", <[_]>::is_empty).await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
}

/// A job becoming a dead letter is said at ERROR with its event name, id and attempts: never
/// its body, key or error text (which can hold phone numbers).
#[tokio::test]
async fn a_dead_letter_is_logged_at_error_without_its_content() {
    let (captured, guard) = CapturedLog::start();

    let dir = TempDir::new("dead-log");
    let inbox = Inbox::new(SqliteStore::open(dir.db()).unwrap());
    let body = chat_message("919999912345@c.us", "doomed");
    inbox.store().insert(delivery(body.clone())).await.unwrap();
    let router = EventRouter::new().on_message_created(|_: WebhookEvent| async {
        Err::<(), _>("CRM refused contact 919999912345@c.us")
    });
    let mut config = fast();
    config.max_attempts = 2;
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    wait_for_jobs(inbox.store(), "a dead letter", all_in(JobState::Dead)).await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    drop(guard);

    let log = captured.text();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("became a dead letter")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    for expected in ["ERROR", "event=\"message.created\"", "job=1", "attempts=2"] {
        assert!(line.contains(expected), "{expected} missing from {line}");
    }
    for secret in ["919999912345", "doomed", "hello", "CRM"] {
        assert!(!line.contains(secret), "{secret} in {line}");
    }
}

/// The embedded store, with the answers to its claims held back until a permit is given: the
/// store has carried a claim out while the worker still waits for the answer (as over a slow
/// network to a database). Its retention, when `purges_hang`, never answers (a lock held
/// elsewhere).
#[derive(Clone)]
struct HeldAnswers {
    store: SqliteStore,
    carried_out: Arc<AtomicUsize>,
    answers: Arc<tokio::sync::Semaphore>,
    purges_hang: bool,
    purges_begun: Arc<AtomicUsize>,
}

/// A handler of `message.created` that counts its calls, and succeeds.
fn counting_handler() -> (Arc<AtomicUsize>, EventRouter) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let router = EventRouter::new().on_message_created(move |_: WebhookEvent| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(()) }
    });
    (calls, router)
}

impl HeldAnswers {
    fn new(dir: &TempDir, claims_answered: usize, purges_hang: bool) -> Self {
        HeldAnswers {
            store: SqliteStore::open(dir.db()).unwrap(),
            carried_out: Arc::default(),
            answers: Arc::new(tokio::sync::Semaphore::new(claims_answered)),
            purges_hang,
            purges_begun: Arc::default(),
        }
    }
}

impl InboxStore for HeldAnswers {
    type InsertFuture = <SqliteStore as InboxStore>::InsertFuture;

    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture {
        self.store.insert(delivery)
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<ClaimedJob>, InboxError> {
        let claimed = self.store.claim(request).await;
        self.carried_out.fetch_add(1, Ordering::SeqCst);
        self.answers.acquire().await.expect("never closed").forget();
        claimed
    }

    async fn complete(&self, lease: Lease, now: SystemTime) -> Result<(), InboxError> {
        self.store.complete(lease, now).await
    }

    async fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> Result<(), InboxError> {
        self.store.fail(lease, error, retry_at).await
    }

    async fn release(&self, lease: Lease, now: SystemTime) -> Result<(), InboxError> {
        self.store.release(lease, now).await
    }

    async fn renew(&self, lease: Lease, until: SystemTime) -> Result<bool, InboxError> {
        self.store.renew(lease, until).await
    }

    async fn holds(&self, lease: Lease) -> Result<bool, InboxError> {
        self.store.holds(lease).await
    }

    async fn list(&self, query: ListQuery) -> Result<Vec<JobSummary>, InboxError> {
        self.store.list(query).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, InboxError> {
        self.store.get(id).await
    }

    async fn retry(&self, selection: Selection, now: SystemTime) -> Result<u64, InboxError> {
        self.store.retry(selection, now).await
    }

    async fn purge(&self, selection: Selection) -> Result<u64, InboxError> {
        self.store.purge(selection).await
    }

    async fn purge_handled(&self, before: SystemTime, limit: usize) -> Result<u64, InboxError> {
        self.purges_begun.fetch_add(1, Ordering::SeqCst);
        if self.purges_hang {
            std::future::pending::<()>().await;
        }
        self.store.purge_handled(before, limit).await
    }

    async fn purge_dead(&self, before: SystemTime, limit: usize) -> Result<u64, InboxError> {
        self.store.purge_dead(before, limit).await
    }

    async fn stats(&self, now: SystemTime) -> Result<InboxStats, InboxError> {
        self.store.stats(now).await
    }

    async fn unalerted_dead_letters(&self, limit: usize) -> Result<Vec<UnalertedDeadLetter>, InboxError> {
        self.store.unalerted_dead_letters(limit).await
    }

    async fn mark_alerted(&self, job: JobId, fencing_token: u64) -> Result<(), InboxError> {
        self.store.mark_alerted(job, fencing_token).await
    }
}

/// A claim whose answer is still on its way when the shutdown comes is not abandoned: what the
/// store gave it within the grace period is given back at once, its attempt not counted,
/// instead of being left running (an attempt counted that never ran) until its lease expires.
#[tokio::test]
async fn a_claim_pending_at_shutdown_gives_back_what_it_took() {
    let dir = TempDir::new("claim-at-shutdown");
    let store = HeldAnswers::new(&dir, 0, false);
    store.insert(delivery(chat_message("c", "claimed-at-shutdown"))).await.unwrap();
    let (calls, router) = counting_handler();
    let mut config = fast();
    config.shutdown_grace = Duration::from_secs(5);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(Inbox::new(store.clone()).worker(router).config(config).run(async {
        let _ = stopped.await;
    }));
    within("the store carries the claim out", async {
        while store.carried_out.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let claimed = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!((claimed[0].state, claimed[0].attempts), (JobState::Running, 1));
    let _ = stop.send(());
    // Let the worker see its shutdown while the answer is on its way, then let it arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.answers.add_permits(1);
    within("worker stops", worker).await.unwrap();

    let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Pending, 0), "{jobs:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler ran after the shutdown");
}

/// Retention runs beside the claims: while it hangs (up to the store's timeout, a minute here),
/// a delivery stored meanwhile is still handled at once.
#[tokio::test]
async fn a_retention_that_hangs_delays_no_job() {
    let dir = TempDir::new("retention-hangs");
    let store = HeldAnswers::new(&dir, usize::MAX >> 4, true);
    let (calls, router) = counting_handler();
    let mut config = fast();
    config.retention = Duration::from_millis(1);
    config.store_timeout = Duration::from_secs(60);
    let inbox = Inbox::new(store.clone());
    let worker = inbox.worker(router).config(config).spawn();
    within("retention begins", async {
        while store.purges_begun.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    store.insert(delivery(chat_message("c", "during-retention"))).await.unwrap();
    within("the delivery is handled while retention hangs", async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    within("the worker stops", worker.shutdown()).await.unwrap();
}
