//! The testing helpers: `MemoryInboxStore` follows the durable stores' rules (the generic store
//! cases), `Worker::run_until_idle` returns once nothing is queued, and `Worker::spawn`'s handle
//! stops the worker, by `shutdown` or by being dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use periskope_webhook::inbox::{Inbox, InboxStore, JobState, ListQuery, MemoryInboxStore, WorkerConfig};
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent, testing};
use tower::ServiceExt;

use crate::common::{KEY, within};
use crate::support::{chat_message, delivery};

macro_rules! generic_cases {
    ($module:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                crate::$module::$case(MemoryInboxStore::new()).await;
            }
        )*
    };
}

generic_cases!(store:
    the_same_occurrence_is_stored_once_until_it_is_purged,
    attempts_are_counted_at_claim_and_a_job_that_never_settles_ends_dead,
    jobs_of_one_chat_are_claimed_one_at_a_time_in_order,
    operations_list_inspect_retry_and_purge_with_stats,
    dead_letters_are_purged_by_when_they_died,
    retention_deletes_at_most_its_limit_and_nothing_newer,
    stats_are_exact_while_others_read_them,
);

generic_cases!(console_store:
    search_filters_and_pages_newest_first,
    a_masked_search_matches_the_masked_text_step_by_step,
    attempts_are_kept_with_their_outcomes,
    per_minute_counts_and_dead_letters_by_event,
    a_handled_job_is_replayed_and_bulk_actions_follow_the_filter,
);

generic_cases!(worker:
    unbounded_durations_in_the_configuration_still_handle_jobs,
    a_router_that_routes_only_the_webhook_path_handles_the_job,
    dead_letters_are_purged_after_their_retention,
);

fn fast() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.backoff_base = Duration::from_millis(2);
    config.backoff_max = Duration::from_millis(10);
    config.poll_interval = Duration::from_millis(5);
    config.max_attempts = 3;
    config
}

/// A handler that counts its calls and fails the first `failures` of them.
fn counting(failures: usize) -> (Arc<AtomicUsize>, EventRouter) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let router = EventRouter::new().fallback(move |_event: WebhookEvent| {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move { if call < failures { Err(std::io::Error::other("not yet")) } else { Ok(()) } }
    });
    (calls, router)
}

#[tokio::test]
async fn run_until_idle_returns_once_every_job_is_handled_or_dead() {
    let inbox = Inbox::new(MemoryInboxStore::new());
    // Through the layer and the acceptor, as a test of a real app would.
    let request: http::Request<axum::body::Body> =
        testing::signed_request_for_body(KEY, "/webhooks/periskope", chat_message("c1", "m1"));
    let accepted = PeriskopeWebhookLayer::new(KEY).service(inbox.acceptor()).oneshot(request).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    for id in ["m2", "m3"] {
        inbox.store().insert(delivery(chat_message("c2", id))).await.unwrap();
    }

    // Two failures, then success: retried after the backoff, all within one run.
    let (calls, handler) = counting(2);
    within("idle", inbox.worker(handler).config(fast()).run_until_idle()).await;
    let stats = inbox.store().stats(SystemTime::now()).await.unwrap();
    assert_eq!((stats.queue_depth(), stats.done, stats.dead), (0, 3, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    // A job that always fails ends dead, and the run still returns.
    inbox.store().insert(delivery(chat_message("c3", "m4"))).await.unwrap();
    let (calls, handler) = counting(usize::MAX);
    within("idle", inbox.worker(handler).config(fast()).run_until_idle()).await;
    let dead = inbox.store().list(ListQuery::new(Some(JobState::Dead), 10)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "max_attempts");

    // Nothing queued: returns at once, without calling the handler.
    let (calls, handler) = counting(0);
    within("idle", inbox.worker(handler).config(fast()).run_until_idle()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_spawned_worker_stops_on_shutdown_and_when_its_handle_is_dropped() {
    let inbox = Inbox::new(MemoryInboxStore::new());
    let (calls, handler) = counting(0);
    let worker = inbox.worker(handler).config(fast()).spawn();
    inbox.store().insert(delivery(chat_message("c", "m1"))).await.unwrap();
    within("handled by the spawned worker", async {
        while calls.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    within("shutdown returns", worker.shutdown()).await.unwrap();

    // A dropped handle stops its worker gracefully: the job it holds is given back, its
    // attempt not counted, once the grace is over.
    let stuck = EventRouter::new().fallback(|_event: WebhookEvent| async {
        std::future::pending::<Result<(), std::io::Error>>().await
    });
    let mut config = fast();
    config.shutdown_grace = Duration::from_millis(20);
    let worker = inbox.worker(stuck).config(config).spawn();
    inbox.store().insert(delivery(chat_message("c", "m2"))).await.unwrap();
    let state = || async {
        let jobs = inbox.store().list(ListQuery::new(None, 10)).await.unwrap();
        (jobs[1].state, jobs[1].attempts)
    };
    within("the job is running", async {
        while state().await != (JobState::Running, 1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    drop(worker);
    within("the job is released", async {
        while state().await != (JobState::Pending, 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
