//! The PostgreSQL store against a real server (a throw-away cluster, `tests/common/postgres.rs`):
//! the generic store cases, concurrent migrations, claims from many connections at once that
//! never hand one job to two claimers, per-chat order whatever the order of commits, text
//! PostgreSQL cannot hold as such, the database's own error messages, and calls bounded in time.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use periskope_webhook::PeriskopeWebhookLayer;
use periskope_webhook::inbox::{
    AttemptOutcome, ClaimRequest, ConsoleStore, Inbox, InboxError, InboxStore, JobFilter, JobState,
    ListQuery, PostgresStore, Selection, Stored,
};
use tower::Layer;

use crate::common::postgres::{Database, cluster};
use crate::common::{self, KEY, Stack, client, send, signed, within};
use crate::crash::{Lines, Process, short_digest};
use crate::support::{chat_message, delivery, message_id};

/// A fresh database and a store connected to it; `None` when PostgreSQL is not available.
async fn store() -> Option<(Database, PostgresStore)> {
    let database = cluster()?.database();
    let store = PostgresStore::connect(&database.url()).await.expect("connect to the test database");
    Some((database, store))
}

macro_rules! generic_cases {
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

generic_cases!(
    the_same_occurrence_is_stored_once_until_it_is_purged,
    attempts_are_counted_at_claim_and_a_job_that_never_settles_ends_dead,
    jobs_of_one_chat_are_claimed_one_at_a_time_in_order,
    operations_list_inspect_retry_and_purge_with_stats,
    retention_deletes_at_most_its_limit_and_nothing_newer,
    stats_are_exact_while_others_read_them,
);

macro_rules! console_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some((_database, store)) = store().await else { return };
                crate::console_store::$case(store).await;
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

/// A database made by hand as version 2 of the schema (0.2's) left it, with a job that was
/// running when its worker died and a dead letter, is upgraded to the current version on
/// connect: the jobs keep everything (the running job holds its chat until its lease's end),
/// the console's queries work on them, the running job's next claim opens its attempt history,
/// and purging a job removes its attempts.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_2_database_is_upgraded_to_the_current_version() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let admin = admin(&database).await;
    admin
        .batch_execute(
            "CREATE TABLE periskope_inbox_schema (version INTEGER NOT NULL);
             INSERT INTO periskope_inbox_schema (version) VALUES (1), (2);
             CREATE TABLE periskope_inbox_jobs (
                 id BIGSERIAL PRIMARY KEY, dedup_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
                 ordering_key TEXT, body BYTEA NOT NULL, signing_key TEXT, received_at BIGINT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                 run_at BIGINT NOT NULL, lease_until BIGINT, last_error TEXT, handled_at BIGINT,
                 path TEXT NOT NULL DEFAULT '/', dead_at BIGINT);
             CREATE INDEX periskope_inbox_due ON periskope_inbox_jobs (state, run_at);
             CREATE INDEX periskope_inbox_order ON periskope_inbox_jobs (ordering_key, id)
                 WHERE ordering_key IS NOT NULL;
             CREATE INDEX periskope_inbox_handled ON periskope_inbox_jobs (handled_at) WHERE state = 'done';
             CREATE INDEX periskope_inbox_dead ON periskope_inbox_jobs (dead_at) WHERE state = 'dead';
             INSERT INTO periskope_inbox_jobs
                     (dedup_key, event, ordering_key, body, received_at, run_at, state, attempts, lease_until, path)
                 VALUES ('message.created|2:m1', 'message.created', 'chat|c', '\\x7b7d', 1000, 1000,
                         'running', 1, 5000, '/hooks');
             INSERT INTO periskope_inbox_jobs
                     (dedup_key, event, body, received_at, run_at, state, attempts, last_error, dead_at)
                 VALUES ('dead', 'reaction.created', '\\x7b7d', 2000, 2000, 'dead', 8, 'CRM down', 3000);",
        )
        .await
        .unwrap();

    let store = PostgresStore::connect(&database.url()).await.unwrap();
    let version: i32 =
        admin.query_one("SELECT max(version) FROM periskope_inbox_schema", &[]).await.unwrap().get(0);
    assert_eq!(version, 9);
    assert_eq!(
        store.unalerted_dead_letters(10).await.unwrap(),
        [],
        "dead letters of earlier versions count as told"
    );
    let mut chat = JobFilter::default();
    chat.chat = Some("c".to_owned());
    let found = store.search(chat).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].key.as_str(), found[0].state), ("message.created|2:m1", JobState::Running));
    assert!(store.attempts(found[0].id).await.unwrap().is_empty(), "no history before version 3");
    let dead = store.dead_letters_by_event(5).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].event.as_str(), dead[0].latest_error.as_deref()),
        ("reaction.created", Some("CRM down"))
    );

    // The lease expired long ago: the job is claimed again, on its second attempt.
    let claimed = store.claim(claim_now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].attempt, claimed[0].path.as_str()), (2, "/hooks"));
    store.complete(claimed[0].lease(), SystemTime::now()).await.unwrap();
    let history = store.attempts(claimed[0].id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].number, history[0].outcome), (2, AttemptOutcome::Handled));
    assert_eq!(store.purge(Selection::Job(claimed[0].id)).await.unwrap(), 1);
    let left: i64 =
        admin.query_one("SELECT count(*) FROM periskope_inbox_attempts", &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "a purged job's attempts go with it");
}

/// A database at the version 8 that a withdrawn pre-release build wrote (another body for the
/// trigger's function that brings a chat's next job back) is upgraded to a schema whose
/// functions and triggers are a fresh database's.
#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawn_version_8_database_gets_the_current_functions() {
    let Some(cluster) = cluster() else { return };
    let (fresh, upgraded) = (cluster.database(), cluster.database());
    drop(PostgresStore::connect(&fresh.url()).await.unwrap());
    drop(PostgresStore::connect(&upgraded.url()).await.unwrap());
    let upgrading = admin(&upgraded).await;
    upgrading
        .batch_execute(
            "DROP FUNCTION periskope_inbox_complete;
             DROP TRIGGER periskope_inbox_next_after_settling ON periskope_inbox_jobs;
             CREATE TRIGGER periskope_inbox_next_after_settling AFTER UPDATE OF state ON periskope_inbox_jobs
             FOR EACH ROW WHEN (OLD.ordering_key IS NOT NULL AND OLD.state IN ('pending', 'running')
                                AND NEW.state IN ('done', 'dead'))
             EXECUTE FUNCTION periskope_inbox_next_of_chat();
             CREATE OR REPLACE FUNCTION periskope_inbox_next_of_chat() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 UPDATE periskope_inbox_jobs SET waiting = false
                 WHERE id = (SELECT id FROM periskope_inbox_jobs
                     WHERE ordering_key = OLD.ordering_key AND state IN ('pending', 'running') AND waiting
                     ORDER BY id LIMIT 1);
                 RETURN NULL;
             END $$;
             DELETE FROM periskope_inbox_schema WHERE version = 9;
             INSERT INTO periskope_inbox_schema (version) VALUES (8);",
        )
        .await
        .unwrap();
    let definitions = |client: tokio_postgres::Client| async move {
        let functions = "SELECT proname, pg_get_functiondef(oid) FROM pg_proc
                         WHERE proname LIKE 'periskope_inbox_%' ORDER BY proname";
        let triggers = "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
                        WHERE tgname LIKE 'periskope_inbox_%' ORDER BY tgname";
        let mut found = Vec::new();
        for query in [functions, triggers] {
            for row in client.query(query, &[]).await.unwrap() {
                found.push((row.get::<_, String>(0), row.get::<_, String>(1)));
            }
        }
        found
    };
    assert_ne!(definitions(admin(&upgraded).await).await, definitions(admin(&fresh).await).await);

    drop(PostgresStore::connect(&upgraded.url()).await.unwrap());
    let version: i32 =
        upgrading.query_one("SELECT max(version) FROM periskope_inbox_schema", &[]).await.unwrap().get(0);
    assert_eq!(version, 9);
    assert_eq!(definitions(upgrading).await, definitions(admin(&fresh).await).await);
}

/// During a rolling upgrade, a replica still running a version before schema 9 settles a job
/// with an update of its own, as it did then: the chat's next job still comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_completion_by_an_earlier_version_brings_the_chats_next_job_back() {
    let Some((database, store)) = store().await else { return };
    for id in ["first", "second"] {
        store.insert(delivery(chat_message("c", id))).await.unwrap();
    }
    let first = store.claim(claim_now()).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(store.claim(claim_now()).await.unwrap().is_empty(), "the chat's first job runs");
    let admin = admin(&database).await;
    let waiting = "SELECT count(*) FROM periskope_inbox_jobs WHERE waiting";
    let marked: i64 = admin.query_one(waiting, &[]).await.unwrap().get(0);
    assert_eq!(marked, 1, "a claim marked the chat's second job");

    // The settlement as a version before schema 9 writes it, without periskope_inbox_complete.
    admin
        .execute(
            "WITH settled AS (
                 UPDATE periskope_inbox_jobs SET state = 'done', handled_at = 0, lease_until = NULL, waiting = false
                 WHERE id = $1 RETURNING id
             )
             DELETE FROM periskope_inbox_chats AS chat USING settled WHERE chat.job_id = settled.id",
            &[&first[0].id],
        )
        .await
        .unwrap();
    let next = store.claim(claim_now()).await.unwrap();
    assert_eq!(next.len(), 1, "the chat's next job came back");
    assert_eq!(message_id(&next[0].body), "second");
}

/// A statement PostgreSQL aborts as a deadlock's victim runs again: here a purge that deleted
/// the first of two jobs while another transaction held the second, and that transaction then
/// waited for the first. The purge, aborted, is run again once the other one commits, and
/// deletes both.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_aborted_as_a_deadlocks_victim_runs_again() {
    let Some((database, store)) = store().await else { return };
    for id in ["first", "second"] {
        store.insert(delivery(chat_message(id, id))).await.unwrap();
    }
    let ids: Vec<i64> = store.list(ListQuery::new(None, 2)).await.unwrap().iter().map(|job| job.id).collect();
    let (first, second) = (ids.iter().min().copied().unwrap(), ids.iter().max().copied().unwrap());
    let other = admin(&database).await;
    // Only the purge's backend looks for the deadlock (after the server's default second):
    // this one would wait a minute first.
    other.batch_execute("SET deadlock_timeout = '60s'; BEGIN").await.unwrap();
    let lock = "SELECT id FROM periskope_inbox_jobs WHERE id = $1 FOR UPDATE";
    other.query(lock, &[&second]).await.unwrap();

    let purging = {
        let store = store.clone();
        tokio::spawn(async move { store.purge(Selection::State(JobState::Pending)).await })
    };
    let observer = admin(&database).await;
    within("the purge waits for the second job", async {
        while waiting_on_locks(&observer).await < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // This waits for the purge, which waits for it: the purge's backend finds the deadlock and
    // aborts its own statement.
    other.query(lock, &[&first]).await.unwrap();
    other.batch_execute("COMMIT").await.unwrap();
    assert_eq!(purging.await.unwrap().unwrap(), 2, "the purge ran again after its abort");
}

/// Each job keeps its last `attempts_kept` attempts.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_last_attempts_are_kept() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let store = PostgresStore::options().attempts_kept(2).connect(&database.url()).await.unwrap();
    store.insert(delivery(chat_message("c", "kept"))).await.unwrap();
    for _ in 0..3 {
        let job = store.claim(ClaimRequest::new(1, Duration::from_secs(60), 9)).await.unwrap().remove(0);
        store.fail(job.lease(), "again".to_owned(), Some(SystemTime::now())).await.unwrap();
    }
    let job = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    let numbers: Vec<u32> =
        store.attempts(job.id).await.unwrap().iter().map(|attempt| attempt.number).collect();
    assert_eq!(numbers, [2, 3]);
}

/// Stored texts are escaped (`TEXT` cannot hold NUL): the console's filters find a job by a
/// chat, a key and a last error that hold NUL and backslashes, and the error reads back as it
/// was written.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_filters_find_texts_with_nul_and_backslashes() {
    let Some((_database, store)) = store().await else { return };
    let body = Bytes::from_static(
        br#"{"event":"message.created","data":{"message_id":"m\u0000\\b","chat_id":"c\u0000\\x"},"org_id":"o"}"#,
    );
    let sent = delivery(body);
    store.insert(sent.clone()).await.unwrap();
    store.insert(delivery(chat_message("plain", "plain"))).await.unwrap();
    let job = store.claim(claim_now()).await.unwrap().into_iter().find(|job| job.key == sent.key).unwrap();
    store.fail(job.lease(), "bad \\0 byte\0 here".to_owned(), None).await.unwrap();

    let mut by_chat = JobFilter::default();
    by_chat.chat = Some("c\0\\x".to_owned());
    let mut by_key = JobFilter::default();
    by_key.text = Some("\0\\b".to_owned());
    let mut by_error = JobFilter::default();
    by_error.text = Some("byte\0 h".to_owned());
    for filter in [by_chat, by_key, by_error] {
        let found = store.search(filter.clone()).await.unwrap();
        assert_eq!(
            found.iter().map(|job| job.key.as_str()).collect::<Vec<_>>(),
            [sent.key.as_str()],
            "{filter:?}"
        );
        assert_eq!(store.count(filter).await.unwrap(), 1);
    }
    let mut escaped = JobFilter::default();
    escaped.text = Some("\\\\b".to_owned());
    assert_eq!(store.count(escaped).await.unwrap(), 0, "the escaped form is not what was stored");
    let dead = store.dead_letters_by_event(5).await.unwrap();
    assert_eq!(dead[0].event, sent.event);
    assert_eq!(dead[0].latest_error.as_deref(), Some("bad \\0 byte\0 here"));
    assert_eq!(store.attempts(job.id).await.unwrap()[0].error.as_deref(), Some("bad \\0 byte\0 here"));
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_starting_together_migrate_once() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let url = database.url();
    let connects: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect_with(&url, 1).await })
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.unwrap().expect("every replica connects"));
    }
    stores[0].insert(delivery(chat_message("c", "m"))).await.unwrap();
    assert_eq!(stores[5].list(ListQuery::new(None, 10)).await.unwrap().len(), 1);
}

/// Connections the server closed (`pg_terminate_backend`, as a restart or an administrator
/// would) are opened again by the calls that pick them: after a few failed calls (those that
/// reach a connection before its loss is noticed) every call succeeds, and what was stored
/// before is still there.
#[tokio::test(flavor = "multi_thread")]
async fn connections_the_server_closed_are_opened_again() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    const CONNECTIONS: usize = 2;
    let store = PostgresStore::connect_with(&database.url(), CONNECTIONS).await.unwrap();
    store.insert(delivery(chat_message("c", "before"))).await.unwrap();

    let (admin, connection) = tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    // The connection the store listens on has a test of its own; the others are cut here.
    within("the store listens", async {
        let listening = "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN periskope_inbox'";
        while admin.query_opt(listening, &[]).await.unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query <> 'LISTEN periskope_inbox'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), CONNECTIONS, "the store's connections were terminated");

    let mut stored = vec!["before".to_owned()];
    let (mut failures, mut successes_in_a_row) = (0, 0);
    for n in 0..20 {
        let id = format!("after-{n}");
        match store.insert(delivery(chat_message("c", &id))).await {
            Ok(_) => {
                stored.push(id);
                successes_in_a_row += 1;
            }
            Err(InboxError::Storage(_)) => {
                failures += 1;
                successes_in_a_row = 0;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
        if successes_in_a_row == 4 * CONNECTIONS {
            break;
        }
    }
    assert_eq!(successes_in_a_row, 4 * CONNECTIONS, "the store recovered ({failures} calls failed first)");
    assert!(failures <= 2 * CONNECTIONS, "{failures} failed calls for {CONNECTIONS} broken connections");

    let mut found: Vec<String> = Vec::new();
    for job in store.list(ListQuery::new(None, 100)).await.unwrap() {
        let record = store.get(job.id).await.unwrap().expect("a listed job");
        let body = String::from_utf8(record.body.to_vec()).unwrap();
        let id = body.split(r#""message_id":""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap();
        found.push(id.to_owned());
    }
    found.sort();
    stored.sort();
    assert_eq!(found, stored, "every acknowledged delivery is stored, and only those");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_claimers_never_share_a_job() {
    let Some((database, store)) = store().await else { return };
    const JOBS: usize = 300;
    for n in 0..JOBS {
        // No chat: every job is claimable at once, so the claimers really compete.
        let body =
            bytes::Bytes::from(format!(r#"{{"event":"message.created","data":{{"message_id":"m{n}"}}}}"#));
        store.insert(delivery(body)).await.unwrap();
    }
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let url = database.url();
            tokio::spawn(async move {
                let replica = PostgresStore::connect_with(&url, 2).await.unwrap();
                let mut claimed = Vec::new();
                loop {
                    let jobs = replica.claim(ClaimRequest::new(7, Duration::from_secs(60), 5)).await.unwrap();
                    if jobs.is_empty() {
                        return claimed;
                    }
                    for job in jobs {
                        replica.complete(job.lease(), SystemTime::now()).await.unwrap();
                        claimed.push(job.id);
                    }
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut busy_claimers = 0;
    for claimer in claimers {
        let claimed = claimer.await.unwrap();
        busy_claimers += usize::from(!claimed.is_empty());
        for id in claimed {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), JOBS);
    assert!(busy_claimers > 1, "the claims never overlapped");
    let stats = store.stats(SystemTime::now()).await.unwrap();
    assert_eq!((stats.done, stats.queue_depth()), (JOBS as u64, 0));
    let done = store.list(ListQuery::new(Some(JobState::Done), 1000)).await.unwrap();
    assert!(done.iter().all(|job| job.attempts == 1));
}

/// Two copies of the `inbox` example share one PostgreSQL queue; one is SIGKILLed while it
/// handles jobs. Every acknowledged delivery is handled, each job by one worker at a time, and
/// the killed worker's jobs are taken over by the other once their lease expires.
#[tokio::test(flavor = "multi_thread")]
async fn two_worker_processes_share_the_queue_and_take_over_a_killed_ones_jobs() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let lines = Lines::default();
    const LEASE_MS: &str = "2000";
    let env = [("INBOX_LEASE_MS", LEASE_MS)];
    let mut first = Process::start_with(database.url(), 300, 0, &lines, &env);
    let second = Process::start_with(database.url(), 300, 1, &lines, &env);

    let client = client();
    let mut acknowledged = HashSet::new();
    for n in 0..40 {
        // One chat per message, so that both workers have work at once.
        let body = chat_message(&format!("chat-{n}"), &format!("shared-{n}"));
        let url = if n % 2 == 0 { first.url() } else { second.url() };
        send(&client, signed(&url, KEY, body.clone())).await.assert(http::StatusCode::OK, "accepted");
        acknowledged.insert(short_digest(&body));
    }
    // Kill the first worker in the middle of its handling.
    within("the first worker handles something", async {
        while !lines.lock().unwrap().iter().any(|(run, _)| *run == 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let killed_at = std::time::Instant::now();
    first.kill();

    let store = PostgresStore::connect_with(&database.url(), 1).await.unwrap();
    let handled = || {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, line)| line.rsplit(' ').next().map(str::to_owned))
            .collect::<HashSet<_>>()
    };
    within("every acknowledged delivery is handled", async {
        while !acknowledged.is_subset(&handled()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let taken_over_after = killed_at.elapsed();
    within("every job is done", async {
        while store.stats(SystemTime::now()).await.unwrap().done < 40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    second.interrupt();

    let jobs = store.list(ListQuery::new(None, 100)).await.unwrap();
    let taken_over: Vec<_> = jobs.iter().filter(|job| job.attempts == 2).collect();
    assert!(jobs.iter().all(|job| job.state == JobState::Done && job.attempts <= 2), "{jobs:?}");
    assert!(!taken_over.is_empty(), "the killed worker held no job");
    // The killed worker held its 8 running jobs, and at most as many whose handler had
    // returned: a slot is freed once its settlement is sent, before the store answers.
    assert!(taken_over.len() <= 2 * 8, "more jobs taken over than the killed worker could hold");
    assert!(taken_over_after >= Duration::from_millis(1500), "taken over before the lease expired");
    let lines = lines.lock().unwrap().clone();
    let duplicates = lines.len() - handled().len();
    assert!(
        duplicates <= taken_over.len(),
        "{duplicates} deliveries handled twice, but only {} jobs were taken over",
        taken_over.len()
    );
    println!(
        "postgres: 2 workers, 40 deliveries, {} taken over after the kill, {duplicates} handled twice",
        taken_over.len()
    );
}

/// A connection of the test's own, beside the store's.
async fn admin(database: &Database) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn claim_now() -> ClaimRequest {
    ClaimRequest::new(10, Duration::from_secs(60), 5)
}

/// How many of this database's backends wait on a lock.
async fn waiting_on_locks(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The earlier job of a chat commits only after a later one was claimed (a replica whose commit
/// was slow, or one that stored it without the chat lock, like an older version): it is not
/// claimed while the later one runs under a live lease.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_committed_late_waits_while_a_later_job_of_its_chat_runs() {
    let Some((database, store)) = store().await else { return };
    let mut admin = admin(&database).await;
    let slow = admin.transaction().await.unwrap();
    let earlier = delivery(chat_message("x", "earlier"));
    slow.execute(
        "INSERT INTO periskope_inbox_jobs (dedup_key, event, ordering_key, body, received_at, run_at)
         VALUES ($1, $2, $3, $4, 0, 0)",
        &[&earlier.key, &earlier.event, &earlier.ordering_key, &&earlier.body[..]],
    )
    .await
    .unwrap();
    store.insert(delivery(chat_message("x", "later"))).await.unwrap();
    let later = store.claim(claim_now()).await.unwrap();
    assert_eq!(later.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["later"]);

    slow.commit().await.unwrap();
    assert!(
        store.claim(claim_now()).await.unwrap().is_empty(),
        "a job was claimed while a job of its chat runs"
    );

    // The later job's worker died: once its lease expired, the earlier job is not stuck behind
    // it, and the later one runs again after the earlier one.
    let claim_at = |at: SystemTime| {
        let mut request = claim_now();
        request.now = at;
        request
    };
    let expired = SystemTime::now() + Duration::from_secs(61);
    let next = store.claim(claim_at(expired)).await.unwrap();
    assert_eq!(next.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["earlier"]);
    store.complete(next[0].lease(), expired).await.unwrap();
    let last = store.claim(claim_at(expired)).await.unwrap();
    assert_eq!(
        last.iter().map(|job| (message_id(&job.body), job.attempt)).collect::<Vec<_>>(),
        [("later".to_owned(), 2)]
    );
}

/// Two deliveries of one chat stored at once, in flight together: the first one's commit is
/// slow (a trigger holds its statement after its id was drawn, until the test opens a gate), so
/// the second commits first and runs. Inserts of a chat are not serialized, so the first lands
/// while the second runs: it is not claimed until the second is settled, then it runs.
#[tokio::test(flavor = "multi_thread")]
async fn inserts_whose_commits_reorder_still_run_one_at_a_time() {
    let Some((database, store)) = store().await else { return };
    let admin = admin(&database).await;
    admin
        .batch_execute(
            "SELECT pg_advisory_lock(1, 1);
             CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF convert_from(NEW.body, 'UTF8') LIKE '%slow-commit%' THEN
                     PERFORM pg_advisory_xact_lock_shared(1, 1);
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER slow_commit AFTER INSERT ON periskope_inbox_jobs
                 FOR EACH ROW EXECUTE FUNCTION slow_commit();",
        )
        .await
        .unwrap();
    let insert = |id: &'static str| {
        let store = store.clone();
        tokio::spawn(async move { store.insert(delivery(chat_message("x", id))).await })
    };
    let slow = insert("slow-commit");
    within("the first delivery waits at the gate", async {
        while waiting_on_locks(&admin).await < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(within("the second is stored at once", insert("quick")).await.unwrap().unwrap(), Stored::New);
    let quick = store.claim(claim_now()).await.unwrap();
    assert_eq!(quick.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["quick"]);

    admin.execute("SELECT pg_advisory_unlock(1, 1)", &[]).await.unwrap();
    assert_eq!(within("the first is stored", slow).await.unwrap().unwrap(), Stored::New);
    assert!(store.claim(claim_now()).await.unwrap().is_empty(), "the first waits while the second runs");
    store.complete(quick[0].lease(), SystemTime::now()).await.unwrap();
    let first = store.claim(claim_now()).await.unwrap();
    assert_eq!(first.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["slow-commit"]);
}

/// The race a snapshot check lost: job 1 of a chat is dead, and a worker's claim of job 2 is
/// slowed inside the database (a trigger waits on a lock the test holds) before it commits.
/// An operator retries job 1 and a second worker claims: it must not get job 1 while job 2 is
/// being claimed, and once the first claim commits, only job 2 runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_claim_slowed_inside_the_database_and_a_retried_job_never_run_together() {
    let Some((database, first_worker)) = store().await else { return };
    let second_worker = PostgresStore::connect(&database.url()).await.unwrap();
    let admin = admin(&database).await;
    first_worker.insert(delivery(chat_message("x", "job-1"))).await.unwrap();
    first_worker.insert(delivery(chat_message("x", "job-2"))).await.unwrap();
    let job_1 = first_worker.claim(claim_now()).await.unwrap().remove(0);
    first_worker.fail(job_1.lease(), "down".to_owned(), None).await.unwrap();
    admin
        .batch_execute(
            "SELECT pg_advisory_lock(1, 2);
             CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.state = 'running' AND convert_from(NEW.body, 'UTF8') LIKE '%job-2%' THEN
                     PERFORM pg_advisory_xact_lock_shared(1, 2);
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER slow_claim BEFORE UPDATE ON periskope_inbox_jobs
                 FOR EACH ROW EXECUTE FUNCTION slow_claim();",
        )
        .await
        .unwrap();
    let slowed = {
        let store = first_worker.clone();
        tokio::spawn(async move { store.claim(claim_now()).await })
    };
    within("the first claim waits inside the database", async {
        while waiting_on_locks(&admin).await < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(second_worker.retry(Selection::Job(job_1.id), SystemTime::now()).await.unwrap(), 1);
    let second = {
        let store = second_worker.clone();
        tokio::spawn(async move { store.claim(claim_now()).await })
    };
    within("the second claim answers or waits on the chat", async {
        while !second.is_finished() && waiting_on_locks(&admin).await < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    admin.execute("SELECT pg_advisory_unlock(1, 2)", &[]).await.unwrap();
    let first = within("the first claim", slowed).await.unwrap().unwrap();
    let second = within("the second claim", second).await.unwrap().unwrap();
    let running = admin
        .query_one(
            "SELECT count(*) FROM periskope_inbox_jobs WHERE ordering_key = 'chat|x' AND state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(running, 1, "one job of the chat runs: first {:?}, second {:?}", ids(&first), ids(&second));
    assert_eq!(ids(&first).len() + ids(&second).len(), 1);
}

fn ids(jobs: &[periskope_webhook::inbox::ClaimedJob]) -> Vec<String> {
    jobs.iter().map(|job| message_id(&job.body)).collect()
}

/// PostgreSQL's `TEXT` cannot hold NUL, which a signed delivery may carry in its ids and event
/// name (`\u0000` in JSON): such deliveries are stored, listed, claimed and de-duplicated as on
/// SQLite, with every text read back as sent; a backslash stays distinct from an escape.
#[tokio::test(flavor = "multi_thread")]
async fn deliveries_with_nul_in_ids_and_event_names_are_stored_and_read_back() {
    let Some((_database, store)) = store().await else { return };
    let inbox = Inbox::new(store.clone());
    let server = common::serve(Stack::Axum, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor())).await;
    let client = client();
    let bodies = [
        r#"{"event":"message.created","data":{"message_id":"m\u0000a","chat_id":"c\u0000x","body":"hi"},"org_id":"o"}"#,
        r#"{"event":"message.created","data":{"message_id":"m\\0a","chat_id":"c\\\\x","body":"hi"},"org_id":"o"}"#,
        r#"{"event":"message.created\u0000x","data":{"message_id":"m\u0000b","chat_id":"c\u0000x"},"org_id":"o"}"#,
    ]
    .map(Bytes::from);
    for body in &bodies {
        send(&client, signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "accepted");
    }
    for body in &bodies {
        send(&client, signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "duplicate");
    }
    server.stop().await;

    let sent: Vec<_> = bodies.iter().map(|body| delivery(body.clone())).collect();
    assert!(sent[2].event.contains('\0'), "the event name holds NUL");
    let listed = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!(
        listed.iter().map(|job| (job.event.clone(), job.key.clone())).collect::<Vec<_>>(),
        sent.iter().map(|delivery| (delivery.event.clone(), delivery.key.clone())).collect::<Vec<_>>(),
    );
    for (job, delivery) in listed.iter().zip(&sent) {
        let record = store.get(job.id).await.unwrap().unwrap();
        assert_eq!(record.ordering_key, delivery.ordering_key);
        assert_eq!(record.signing_key.as_deref(), Some("key-0"));
    }
    let mut claimed = Vec::new();
    loop {
        let jobs = store.claim(claim_now()).await.unwrap();
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            store.complete(job.lease(), SystemTime::now()).await.unwrap();
            claimed.push((job.event, job.key, job.body, job.signing_key));
        }
    }
    claimed.sort();
    let mut expected: Vec<_> = sent
        .iter()
        .map(|delivery| {
            (delivery.event.clone(), delivery.key.clone(), delivery.body.clone(), Some("key-0".to_owned()))
        })
        .collect();
    expected.sort();
    assert_eq!(claimed, expected);
}

/// A failed statement's error carries PostgreSQL's own message and SQLSTATE, not just
/// `db error`, and nothing of the delivery (the server's detail quotes the row).
#[tokio::test(flavor = "multi_thread")]
async fn storage_errors_keep_the_database_message_and_nothing_of_the_delivery() {
    let Some((database, store)) = store().await else { return };
    admin(&database)
        .await
        .batch_execute("ALTER TABLE periskope_inbox_jobs ADD CONSTRAINT no_new_jobs CHECK (received_at < 0)")
        .await
        .unwrap();
    let error = store.insert(delivery(chat_message("chat-secret", "message-secret"))).await.unwrap_err();
    let InboxError::Storage(message) = &error else { panic!("{error:?}") };
    assert!(message.contains("no_new_jobs") && message.contains("23514"), "{message}");
    assert!(!message.contains("secret") && !message.contains("hello"), "{message}");
}

/// With the jobs table locked by another session, `insert` and `claim` fail once the configured
/// time is up instead of hanging, the server stops their statements too, and both work again
/// once the lock is released.
#[tokio::test(flavor = "multi_thread")]
async fn calls_on_a_locked_table_fail_within_the_timeout_and_work_once_it_is_released() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let store = PostgresStore::options()
        .connections(2)
        .timeout(Duration::from_millis(300))
        .connect(&database.url())
        .await
        .unwrap();
    store.insert(delivery(chat_message("c", "before"))).await.unwrap();
    let mut admin = admin(&database).await;
    let lock = admin.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE periskope_inbox_jobs IN ACCESS EXCLUSIVE MODE").await.unwrap();

    let during = delivery(chat_message("c", "during"));
    let inserted = within("the insert gives up", store.insert(during.clone())).await;
    assert!(matches!(inserted, Err(InboxError::Storage(_))), "{inserted:?}");
    let claimed = within("the claim gives up", store.claim(claim_now())).await;
    assert!(matches!(claimed, Err(InboxError::Storage(_))), "{claimed:?}");
    let (watcher, connection) =
        tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    within("the server stops the statements", async {
        while waiting_on_locks(&watcher).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    lock.rollback().await.unwrap();
    assert_eq!(store.insert(during).await.unwrap(), Stored::New);
    let jobs = store.claim(claim_now()).await.unwrap();
    assert_eq!(jobs.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["before"]);
}

/// A worker on a store of its own, as in another replica, with polling too slow to explain a
/// pickup: a delivery stored through another store reaches its handler, announced by the
/// notification its store sends after the insert's commit. Once its listening connection is
/// cut, it listens again, and the next delivery is picked up the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_is_woken_by_deliveries_another_replica_stored() {
    let Some((database, acceptor_store)) = store().await else { return };
    let worker_store = PostgresStore::connect_with(&database.url(), 2).await.unwrap();
    let (handled, mut handled_ids) = tokio::sync::mpsc::unbounded_channel::<String>();
    let router = periskope_webhook::EventRouter::new().on_message_created(
        move |event: periskope_webhook::WebhookEvent| {
            let id = event.event().message().and_then(|m| m.message_id.as_deref()).unwrap().to_owned();
            let _ = handled.send(id);
            async { Ok::<_, std::convert::Infallible>(()) }
        },
    );
    let mut config = periskope_webhook::inbox::WorkerConfig::default();
    config.poll_interval = Duration::from_secs(3600);
    let worker = Inbox::new(worker_store).worker(router).config(config).spawn();
    // The worker's first claim, at its start, finds nothing; from then on only a wake-up helps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    acceptor_store.insert(delivery(chat_message("c", "m1"))).await.unwrap();
    let first = within("the announced delivery is handled", handled_ids.recv()).await;
    assert_eq!(first.as_deref(), Some("m1"));

    let admin = admin(&database).await;
    let listeners = || async {
        let rows = admin
            .query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN periskope_inbox'", &[])
            .await
            .unwrap();
        rows.iter().map(|row| row.get::<_, i32>(0)).collect::<HashSet<i32>>()
    };
    let cut = listeners().await;
    assert_eq!(cut.len(), 2, "each store listens on one connection");
    for pid in &cut {
        admin.execute("SELECT pg_terminate_backend($1)", &[pid]).await.unwrap();
    }
    within("both stores listen again, on new connections", async {
        while listeners().await.difference(&cut).count() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    acceptor_store.insert(delivery(chat_message("c", "m2"))).await.unwrap();
    let second = within("the next announced delivery is handled", handled_ids.recv()).await;
    assert_eq!(second.as_deref(), Some("m2"));
    worker.shutdown().await.unwrap();
}
