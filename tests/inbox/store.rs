//! The stores through the `InboxStore` trait: claims, leases, dead letters, the operations API,
//! retention; each case runs on SQLite here and on PostgreSQL in `postgres.rs`. Then what only
//! the embedded file has: reopening, locking, and files it must refuse.

use std::path::Path;
use std::time::{Duration, SystemTime};

use periskope_webhook::inbox::{
    ClaimRequest, InboxError, InboxStore, JobState, ListQuery, Selection, SqliteStore, Stored,
};

use crate::support::{TempDir, chat_message, delivery, key_of, message_id};

fn claim(limit: usize, max_attempts: u32, now: SystemTime) -> ClaimRequest {
    let mut request = ClaimRequest::new(limit, Duration::from_secs(60), max_attempts);
    request.now = now;
    request
}

pub async fn the_same_occurrence_is_stored_once_until_it_is_purged<St: InboxStore>(store: St) {
    let body = chat_message("c1", "m1");
    assert_eq!(store.insert(delivery(body.clone())).await.unwrap(), Stored::New);
    assert_eq!(store.insert(delivery(body.clone())).await.unwrap(), Stored::Duplicate);
    let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].event.as_str(), jobs[0].key.clone()), ("message.created", key_of(&body)));

    // Handled, then purged by retention: the same occurrence is accepted again.
    let now = SystemTime::now();
    let job = store.claim(claim(10, 3, now)).await.unwrap().remove(0);
    assert_eq!(job.body, body);
    store.complete(job.lease(), now).await.unwrap();
    assert_eq!(store.insert(delivery(body.clone())).await.unwrap(), Stored::Duplicate);
    assert_eq!(
        store.purge_handled(now - Duration::from_secs(1), 100).await.unwrap(),
        0,
        "handled after the cutoff"
    );
    assert_eq!(store.purge_handled(now + Duration::from_secs(1), 100).await.unwrap(), 1);
    assert_eq!(store.insert(delivery(body)).await.unwrap(), Stored::New);
}

pub async fn attempts_are_counted_at_claim_and_a_job_that_never_settles_ends_dead<St: InboxStore>(store: St) {
    store.insert(delivery(chat_message("c1", "m1"))).await.unwrap();
    let start = SystemTime::now();
    let first = store.claim(claim(10, 2, start)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    // Leased: not claimable again before the lease expires.
    assert!(store.claim(claim(10, 2, start + Duration::from_secs(59))).await.unwrap().is_empty());
    let second = store.claim(claim(10, 2, start + Duration::from_secs(61))).await.unwrap();
    assert_eq!(second[0].attempt, 2, "an expired lease is taken over, with the attempt counted");
    // The first claim's settlement is fenced off: it no longer holds the job.
    store.complete(first[0].lease(), start).await.unwrap();
    assert_eq!(store.get(first[0].id).await.unwrap().unwrap().summary.state, JobState::Running);
    // Its lease expires too, with no attempt left: a dead letter, not a third run.
    assert!(store.claim(claim(10, 2, start + Duration::from_secs(200))).await.unwrap().is_empty());
    let dead = store.get(first[0].id).await.unwrap().unwrap().summary;
    assert_eq!((dead.state, dead.attempts), (JobState::Dead, 2));
    assert!(dead.last_error.unwrap().contains("lease expired"));
}

pub async fn jobs_of_one_chat_are_claimed_one_at_a_time_in_order<St: InboxStore>(store: St) {
    for (chat, id) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"), ("b", "b2")] {
        store.insert(delivery(chat_message(chat, id))).await.unwrap();
    }
    let now = SystemTime::now();
    let ids = |jobs: &[periskope_webhook::inbox::ClaimedJob]| {
        jobs.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>()
    };
    let first = store.claim(claim(10, 3, now)).await.unwrap();
    assert_eq!(ids(&first), ["a1", "b1"]);
    // a1 fails and backs off: a2 still waits behind it.
    store.fail(first[0].lease(), "boom".to_owned(), Some(now + Duration::from_secs(5))).await.unwrap();
    store.complete(first[1].lease(), now).await.unwrap();
    assert_eq!(ids(&store.claim(claim(10, 3, now)).await.unwrap()), ["b2"]);
    let retried = store.claim(claim(10, 3, now + Duration::from_secs(6))).await.unwrap();
    assert_eq!(ids(&retried), ["a1"]);
    assert_eq!(retried[0].attempt, 2);
    store.complete(retried[0].lease(), now).await.unwrap();
    assert_eq!(ids(&store.claim(claim(10, 3, now)).await.unwrap()), ["a2"]);
}

pub async fn operations_list_inspect_retry_and_purge_with_stats<St: InboxStore>(store: St) {
    for id in ["m1", "m2", "m3"] {
        store.insert(delivery(chat_message(id, id))).await.unwrap();
    }
    let now = SystemTime::now();
    let jobs = store.claim(claim(2, 1, now)).await.unwrap();
    store.fail(jobs[0].lease(), "the CRM said no".to_owned(), None).await.unwrap();

    let stats = store.stats(now + Duration::from_secs(3)).await.unwrap();
    assert_eq!((stats.pending, stats.running, stats.dead, stats.done), (1, 1, 1, 0));
    assert_eq!((stats.queue_depth(), stats.attempts_in_queue), (2, 1));
    assert!(stats.oldest_pending_age.unwrap() >= Duration::from_secs(3));

    let dead = store.list(ListQuery::new(Some(JobState::Dead), 10)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("the CRM said no"));
    let record = store.get(dead[0].id).await.unwrap().unwrap();
    assert_eq!(record.body, chat_message("m1", "m1"));
    assert_eq!(record.ordering_key.as_deref(), Some("chat|m1"));
    assert_eq!(store.list(ListQuery::new(None, 2)).await.unwrap().len(), 2);
    assert_eq!(store.list(ListQuery::new(None, 10).after(dead[0].id)).await.unwrap().len(), 2);

    // Retrying a dead letter makes it due now with its attempts reset.
    assert_eq!(store.retry(Selection::State(JobState::Dead), now).await.unwrap(), 1);
    let retried = store.get(dead[0].id).await.unwrap().unwrap().summary;
    assert_eq!((retried.state, retried.attempts), (JobState::Pending, 0));
    assert_eq!(store.retry(Selection::Job(jobs[1].id), now).await.unwrap(), 0, "a running job is left alone");

    assert_eq!(store.purge(Selection::Job(dead[0].id)).await.unwrap(), 1);
    assert_eq!(store.purge(Selection::State(JobState::Pending)).await.unwrap(), 1);
    assert!(store.get(dead[0].id).await.unwrap().is_none());
    assert_eq!(store.stats(now).await.unwrap().queue_depth(), 1);
    assert_eq!(
        store.insert(delivery(chat_message("m1", "m1"))).await.unwrap(),
        Stored::New,
        "purged: accepted again"
    );
}

/// Dead letters are purged only once they have been dead for the retention given, counted from
/// when each died: by a failed last attempt, or by a claim that found its last lease expired.
/// A retried job is no longer a dead letter; a handled one is not touched.
pub async fn dead_letters_are_purged_by_when_they_died<St: InboxStore>(store: St) {
    for id in ["failed", "expired", "handled", "retried"] {
        store.insert(delivery(chat_message(id, id))).await.unwrap();
    }
    let start = SystemTime::now();
    let jobs = store.claim(claim(10, 1, start)).await.unwrap();
    let job = |id: &str| jobs.iter().find(|job| message_id(&job.body) == id).unwrap().lease();
    store.fail(job("failed"), "gave up".to_owned(), None).await.unwrap();
    store.fail(job("retried"), "gave up".to_owned(), None).await.unwrap();
    store.complete(job("handled"), start).await.unwrap();
    // The last attempt's lease of "expired" runs out: the claim 200 s later makes it dead then.
    assert!(store.claim(claim(10, 1, start + Duration::from_secs(200))).await.unwrap().is_empty());
    assert_eq!(store.stats(start).await.unwrap().dead, 3);
    assert_eq!(store.retry(Selection::Job(job("retried").id), start).await.unwrap(), 1);
    let retried = store.claim(claim(10, 1, start)).await.unwrap().remove(0);
    store.fail(retried.lease(), "gave up".to_owned(), None).await.unwrap();

    assert_eq!(store.purge_dead(start - Duration::from_secs(1), 100).await.unwrap(), 0, "none died before");
    // "failed" and the retried one died now; "expired" 200 s later.
    assert_eq!(store.purge_dead(start + Duration::from_secs(100), 100).await.unwrap(), 2);
    let left = store.list(ListQuery::new(None, 10)).await.unwrap();
    let left: Vec<(String, JobState)> = left.into_iter().map(|job| (job.key, job.state)).collect();
    assert_eq!(
        left,
        [
            (key_of(&chat_message("expired", "expired")), JobState::Dead),
            (key_of(&chat_message("handled", "handled")), JobState::Done)
        ]
    );
    assert_eq!(store.purge_dead(start + Duration::from_secs(300), 100).await.unwrap(), 1);
    assert_eq!(store.stats(start).await.unwrap().dead, 0);
}

/// The counts are exact whoever else reads or keeps them at the same moment: concurrent
/// `stats` calls, and retention calls (which fold the counts on PostgreSQL), never see a state
/// short of its jobs.
pub async fn stats_are_exact_while_others_read_them<St: InboxStore>(store: St) {
    const JOBS: usize = 10;
    const HANDLED: usize = 4;
    for index in 0..JOBS {
        store.insert(delivery(chat_message(&format!("c{index}"), &format!("m{index}")))).await.unwrap();
    }
    let jobs = store.claim(claim(HANDLED, 3, SystemTime::now())).await.unwrap();
    assert_eq!(jobs.len(), HANDLED);
    for job in jobs {
        store.complete(job.lease(), SystemTime::now()).await.unwrap();
    }
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    // Deletes nothing (every job was handled after it), but keeps the counts.
                    store.purge_handled(SystemTime::UNIX_EPOCH, 10).await.unwrap();
                    let stats = store.stats(SystemTime::now()).await.unwrap();
                    assert_eq!(
                        (stats.pending, stats.running, stats.done),
                        ((JOBS - HANDLED) as u64, 0, HANDLED as u64),
                        "{stats:?}"
                    );
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
}

/// A retention call deletes at most its limit of the jobs past the cutoff, and nothing newer:
/// calls until one deletes fewer than the limit delete them all.
pub async fn retention_deletes_at_most_its_limit_and_nothing_newer<St: InboxStore>(store: St) {
    const HANDLED: usize = 25;
    const LIMIT: usize = 10;
    let start = SystemTime::now();
    for index in 0..HANDLED {
        store.insert(delivery(chat_message(&format!("c{index}"), &format!("m{index}")))).await.unwrap();
    }
    let mut handled = 0;
    while handled < HANDLED {
        let jobs = store.claim(claim(100, 3, SystemTime::now())).await.unwrap();
        assert!(!jobs.is_empty(), "every job is claimed in time");
        for job in jobs {
            store.complete(job.lease(), start).await.unwrap();
            handled += 1;
        }
    }
    let kept_body = chat_message("kept", "kept");
    store.insert(delivery(kept_body.clone())).await.unwrap();
    let kept = store.claim(claim(1, 3, SystemTime::now())).await.unwrap().remove(0);
    store.complete(kept.lease(), start + Duration::from_secs(10)).await.unwrap();

    let cutoff = start + Duration::from_secs(1);
    let mut batches = Vec::new();
    loop {
        let deleted = store.purge_handled(cutoff, LIMIT).await.unwrap();
        batches.push(deleted);
        if deleted < LIMIT as u64 {
            break;
        }
    }
    assert_eq!(batches, [10, 10, 5], "each call deletes its limit, until fewer are left");
    assert_eq!(store.stats(SystemTime::now()).await.unwrap().done, 1);
    let left = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!(left.iter().map(|job| job.key.clone()).collect::<Vec<_>>(), [key_of(&kept_body)]);
}

/// The generic cases on the embedded store.
mod sqlite {
    use periskope_webhook::inbox::SqliteStore;

    use crate::support::TempDir;

    #[tokio::test]
    async fn the_same_occurrence_is_stored_once_until_it_is_purged() {
        let dir = TempDir::new("dedup");
        super::the_same_occurrence_is_stored_once_until_it_is_purged(SqliteStore::open(dir.db()).unwrap())
            .await;
    }

    #[tokio::test]
    async fn attempts_are_counted_at_claim_and_a_job_that_never_settles_ends_dead() {
        let dir = TempDir::new("lease");
        super::attempts_are_counted_at_claim_and_a_job_that_never_settles_ends_dead(
            SqliteStore::open(dir.db()).unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn jobs_of_one_chat_are_claimed_one_at_a_time_in_order() {
        let dir = TempDir::new("order");
        super::jobs_of_one_chat_are_claimed_one_at_a_time_in_order(SqliteStore::open(dir.db()).unwrap())
            .await;
    }

    #[tokio::test]
    async fn retention_deletes_at_most_its_limit_and_nothing_newer() {
        let dir = TempDir::new("retention-batches");
        super::retention_deletes_at_most_its_limit_and_nothing_newer(SqliteStore::open(dir.db()).unwrap())
            .await;
    }

    #[tokio::test]
    async fn stats_are_exact_while_others_read_them() {
        let dir = TempDir::new("stats-exact");
        super::stats_are_exact_while_others_read_them(SqliteStore::open(dir.db()).unwrap()).await;
    }

    #[tokio::test]
    async fn dead_letters_are_purged_by_when_they_died() {
        let dir = TempDir::new("dead-retention");
        super::dead_letters_are_purged_by_when_they_died(SqliteStore::open(dir.db()).unwrap()).await;
    }

    #[tokio::test]
    async fn operations_list_inspect_retry_and_purge_with_stats() {
        let dir = TempDir::new("ops");
        super::operations_list_inspect_retry_and_purge_with_stats(SqliteStore::open(dir.db()).unwrap()).await;
    }

    macro_rules! console_cases {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = TempDir::new(stringify!($case));
                    crate::console_store::$case(SqliteStore::open(dir.db()).unwrap()).await;
                }
            )*
        };
    }

    console_cases!(
        search_filters_and_pages_newest_first,
        a_masked_search_matches_the_masked_text_step_by_step,
        attempts_are_kept_with_their_outcomes,
        per_minute_counts_and_dead_letters_by_event,
        a_handled_job_is_replayed_and_bulk_actions_follow_the_filter,
    );
}

#[tokio::test]
async fn a_reopened_file_keeps_its_jobs_and_takes_back_the_running_ones() {
    let dir = TempDir::new("reopen");
    let store = SqliteStore::open(dir.db()).unwrap();
    store.insert(delivery(chat_message("c", "m1"))).await.unwrap();
    let job = store.claim(claim(1, 3, SystemTime::now())).await.unwrap().remove(0);
    drop(store);

    let store = SqliteStore::open(dir.db()).unwrap();
    let summary = store.get(job.id).await.unwrap().unwrap().summary;
    assert_eq!(
        (summary.state, summary.attempts),
        (JobState::Pending, 1),
        "the interrupted attempt stays counted"
    );
    let again = store.claim(claim(1, 3, SystemTime::now())).await.unwrap();
    assert_eq!(again[0].attempt, 2);
}

#[tokio::test]
async fn a_second_store_on_the_same_file_is_refused_until_the_first_closes() {
    let dir = TempDir::new("locked");
    let first = SqliteStore::open(dir.db()).unwrap();
    let error = SqliteStore::open(dir.db()).unwrap_err();
    assert!(matches!(error, InboxError::Locked { .. }), "{error:?}");
    assert!(error.to_string().contains("in use by another process"), "{error}");
    drop(first);
    SqliteStore::open(dir.db()).expect("the lock goes with the first store");
}

#[tokio::test]
async fn a_read_only_store_reads_beside_the_writer_and_never_writes() {
    let dir = TempDir::new("read-only");
    let missing = SqliteStore::options().read_only(true).open(dir.db()).unwrap_err();
    assert!(matches!(missing, InboxError::Open { .. }), "{missing:?}");
    assert!(!dir.db().exists(), "a read-only open creates nothing");

    let writer = SqliteStore::open(dir.db()).unwrap();
    writer.insert(delivery(chat_message("c1", "m1"))).await.unwrap();
    let reader = SqliteStore::options().read_only(true).open(dir.db()).expect("readable beside the writer");
    assert_eq!(reader.stats(SystemTime::now()).await.unwrap().pending, 1);

    // What the writer commits next is seen by the reader's next read.
    writer.insert(delivery(chat_message("c1", "m2"))).await.unwrap();
    let jobs = reader.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(reader.get(jobs[0].id).await.unwrap().is_some());

    // Every write is refused, and nothing changes.
    let refused = reader.insert(delivery(chat_message("c1", "m3"))).await.unwrap_err();
    assert_eq!(refused, InboxError::ReadOnly);
    assert_eq!(
        reader.retry(Selection::State(JobState::Pending), SystemTime::now()).await,
        Err(InboxError::ReadOnly)
    );
    assert_eq!(reader.purge(Selection::State(JobState::Pending)).await, Err(InboxError::ReadOnly));
    assert_eq!(writer.stats(SystemTime::now()).await.unwrap().pending, 2);

    // The writer still works, and still shuts other writers out while the reader is open.
    let claimed = writer.claim(claim(10, 3, SystemTime::now())).await.unwrap();
    assert_eq!(claimed.len(), 1, "one job per chat at a time");
    assert!(matches!(SqliteStore::open(dir.db()), Err(InboxError::Locked { .. })));
}

#[test]
fn corrupt_or_unreadable_files_are_clear_errors() {
    let dir = TempDir::new("corrupt");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let error = SqliteStore::open(&garbage).unwrap_err();
    assert!(matches!(error, InboxError::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("not a database"), "{error}");

    // A directory where the file should be, and a file under a missing directory.
    for path in [dir.path().to_path_buf(), dir.path().join("missing").join("inbox.db")] {
        let error = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(error, InboxError::Open { .. }), "{}: {error:?}", path.display());
    }
    let beside_the_directory = format!("{}-lock", dir.path().display());
    assert!(!Path::new(&beside_the_directory).exists(), "a refused directory leaves no lock file beside it");

    // A valid inbox whose pages were then overwritten.
    let damaged = dir.path().join("damaged.db");
    drop(SqliteStore::open(&damaged).unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    for byte in &mut bytes[100..] {
        *byte = 0xff;
    }
    std::fs::write(&damaged, bytes).unwrap();
    let error = SqliteStore::open(&damaged).unwrap_err();
    assert!(matches!(error, InboxError::Open { .. }), "{error:?}");
}

/// The last clone dropped on a runtime thread closes the file in the background; opening the
/// same file again waits for that instead of finding it locked, and finds every job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dropped_inside_the_runtime_can_be_reopened_at_once() {
    let dir = TempDir::new("reopen-async");
    for round in 0..3 {
        let store = SqliteStore::open(dir.db()).expect("the previous store's file is released");
        let inserts: Vec<_> =
            (0..50).map(|n| store.insert(delivery(chat_message("c", &format!("r{round}-{n}"))))).collect();
        drop(store);
        for insert in inserts {
            assert_eq!(insert.await.unwrap(), Stored::New, "queued before the drop: still written");
        }
    }
    let store = SqliteStore::open(dir.db()).unwrap();
    assert_eq!(store.list(ListQuery::new(None, 1000)).await.unwrap().len(), 150);
}

/// The file holds message bodies and phone numbers: it and its WAL (and shared-memory file,
/// when SQLite makes one) are readable and writable by the owner only.
#[cfg(unix)]
#[tokio::test]
async fn the_inbox_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;

    let dir = TempDir::new("modes");
    let store = SqliteStore::open(dir.db()).unwrap();
    store.insert(delivery(chat_message("c", "m1"))).await.unwrap();
    // The file, its WAL, the WAL index a reader shares, and the lock that keeps writers out.
    for suffix in ["", "-wal", "-shm", "-lock"] {
        let path = format!("{}{suffix}", dir.db().display());
        let metadata = std::fs::metadata(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{path}");
    }
}
