//! [`PostgresStore`]: the inbox in PostgreSQL, one queue shared by several replicas
//! (feature `inbox-postgres`).
//!
//! Workers claim with `FOR UPDATE SKIP LOCKED`, so that two replicas never claim the same job;
//! a claim's lease lets another replica take the job over when a worker dies. Each write is
//! committed before its future resolves (PostgreSQL's default `synchronous_commit = on` syncs
//! the WAL, and concurrent commits share one sync). The schema is created or migrated on
//! connect, under an advisory lock, so replicas starting together migrate once.
//!
//! A chat's jobs run one at a time: a claim takes its chat's row in `periskope_inbox_chats`
//! with an insert whose conflict waits for any other claim of that chat to commit, and takes it
//! over only from a lease that expired; settling the job deletes the row. So two claims racing
//! (a retried job, a commit that landed late, a claim slowed inside the database) never both
//! win, whatever their snapshots saw. Inserts of one chat are not serialized: deliveries in
//! flight together may run in either order (see the [`InboxStore`] contract).
//!
//! A claim reads only due jobs that may run: the jobs found waiting behind an earlier job of
//! their chat are marked out of its index, a bounded number per claim, and each chat's next job
//! is brought back when one is settled (once per chat by a batch of completions, schema
//! version 9), dies or is deleted (by a trigger, schema version 5). Concurrent
//! inserts, and concurrent completions, are written in batches ([`batch`]): one statement and
//! one commit for all the calls queued while the previous batch was written, each caller
//! answered once its batch committed. Stored deliveries are announced by a notification sent
//! after their commit, one at a time per store, and each store listens for them on a
//! connection of its own ([`listen`]), so that an idle worker of any replica claims at once;
//! it polls while that connection is lost. Every call is bounded in time
//! ([`PostgresOptions::timeout`]), on the client and on the server. `TEXT` cannot hold NUL: the
//! texts of a job are stored escaped and read back as they were sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use self::batch::Batches;
use self::listen::{Announcer, Arrivals};

use super::{
    ClaimRequest, ClaimedJob, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobState, JobSummary,
    LEASE_EXPIRED, Lease, ListQuery, MAX_ERROR_LEN, MAX_MARKED_PER_CLAIM, MAX_RUN_BYTES, NewDelivery,
    Selection, Stored, UnalertedDeadLetter, bounded_error, due_at, from_millis, selection_params, to_millis,
};

mod batch;
mod console;
mod listen;

/// The schema version this crate writes.
const SCHEMA_VERSION: i32 = 9;

/// The advisory lock key migrations hold ("periskop" in ASCII).
const MIGRATION_LOCK: i64 = 0x7065_7269_736b_6f70;

/// Connections opened by [`PostgresStore::connect`]: concurrent requests spread over them, and
/// PostgreSQL syncs their concurrent commits together.
const DEFAULT_CONNECTIONS: usize = 8;

/// How long one call may take by default: long enough for a busy server, short enough that a
/// locked table or a lost server answers `503` and lets the worker see shutdown.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE periskope_inbox_jobs (
    id BIGSERIAL PRIMARY KEY,
    dedup_key TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    ordering_key TEXT,
    body BYTEA NOT NULL,
    signing_key TEXT,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    handled_at BIGINT
);
CREATE INDEX periskope_inbox_due ON periskope_inbox_jobs (state, run_at);
CREATE INDEX periskope_inbox_order ON periskope_inbox_jobs (ordering_key, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX periskope_inbox_handled ON periskope_inbox_jobs (handled_at) WHERE state = 'done';
";

/// Version 2: the path each delivery arrived on (`/` for the jobs stored before), and when each
/// dead letter died (the dead letters of version 1 count from the upgrade).
const SCHEMA_V2: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN path TEXT NOT NULL DEFAULT '/';
ALTER TABLE periskope_inbox_jobs ADD COLUMN dead_at BIGINT;
UPDATE periskope_inbox_jobs SET dead_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
WHERE state = 'dead';
CREATE INDEX periskope_inbox_dead ON periskope_inbox_jobs (dead_at) WHERE state = 'dead';
";

/// Version 3, for the console ([`ConsoleStore`](super::ConsoleStore)): each job's last attempts
/// (deleted with their job), and an index for each of the console's queries: keyset pages by
/// state, event or chat (`ordering_key, id` already exists), received-time ranges and
/// per-minute counts, attempts ended per minute, dead letters by event (counted on the dead
/// letters' `(dead_at, event)` index alone, which retention's purge uses too).
const SCHEMA_V3: &str = "
CREATE TABLE periskope_inbox_attempts (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES periskope_inbox_jobs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    outcome TEXT NOT NULL DEFAULT 'running',
    error TEXT
);
CREATE INDEX periskope_inbox_attempts_job ON periskope_inbox_attempts (job_id, id);
CREATE INDEX periskope_inbox_attempts_running ON periskope_inbox_attempts (job_id) WHERE outcome = 'running';
CREATE INDEX periskope_inbox_attempts_ended ON periskope_inbox_attempts (ended_at, outcome)
WHERE ended_at IS NOT NULL;
CREATE INDEX periskope_inbox_state ON periskope_inbox_jobs (state, id);
CREATE INDEX periskope_inbox_event ON periskope_inbox_jobs (event, id);
CREATE INDEX periskope_inbox_received ON periskope_inbox_jobs (received_at);
CREATE INDEX periskope_inbox_dead_event ON periskope_inbox_jobs (event, dead_at, id) WHERE state = 'dead';
DROP INDEX periskope_inbox_dead;
CREATE INDEX periskope_inbox_dead ON periskope_inbox_jobs (dead_at, event) WHERE state = 'dead';
";

/// Version 4: each job's claim counter, the fencing token of its latest claim (it only grows),
/// and a row per chat with a running job, the lock that claims of one chat conflict on (taken
/// over from the chat's running jobs at the upgrade, the latest lease for each chat).
const SCHEMA_V4: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
CREATE TABLE periskope_inbox_chats (
    ordering_key TEXT PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES periskope_inbox_jobs (id) ON DELETE CASCADE,
    lease_until BIGINT NOT NULL
);
CREATE INDEX periskope_inbox_chats_job ON periskope_inbox_chats (job_id);
INSERT INTO periskope_inbox_chats (ordering_key, job_id, lease_until)
SELECT DISTINCT ON (ordering_key) ordering_key, id, coalesce(lease_until, 0) FROM periskope_inbox_jobs
WHERE state = 'running' AND ordering_key IS NOT NULL
ORDER BY ordering_key, lease_until DESC NULLS LAST;
";

/// Folds the counts' changes into one row per state. Two replicas folding at once each fold
/// the rows they deleted, so that nothing is counted twice or lost; the counts are read by a
/// statement of their own ([`InboxStore::stats`]).
const FOLD_COUNTS: &str = "
WITH changes AS (DELETE FROM periskope_inbox_counts RETURNING state, jobs, attempts)
INSERT INTO periskope_inbox_counts (state, jobs, attempts)
SELECT state, sum(jobs), sum(attempts) FROM changes GROUP BY state";

/// Appends the net change of `$rows` (`state`, `jobs`, `attempts` per row) to the counts, as
/// rows of their own: an insert takes no lock another transaction holds, so no commit waits for
/// another one's counts. [`FOLD_COUNTS`] folds them.
macro_rules! count_change {
    ($rows:literal) => {
        concat!(
            "INSERT INTO periskope_inbox_counts (state, jobs, attempts)
    SELECT state, sum(jobs), sum(attempts) FROM (",
            $rows,
            ") AS change
    GROUP BY state HAVING sum(jobs) <> 0 OR sum(attempts) <> 0;"
        )
    };
}

/// The function of the trigger that brings a chat's next job back: it unmarks the chat's first
/// queued job (a query of its own, which sees what the claims that the settlement waited for
/// marked). Written by version 5, and again by version 9.
macro_rules! next_of_chat {
    () => {
        "
CREATE OR REPLACE FUNCTION periskope_inbox_next_of_chat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE periskope_inbox_jobs SET waiting = false
    WHERE waiting AND id = (SELECT id FROM periskope_inbox_jobs
        WHERE ordering_key = OLD.ordering_key AND state IN ('pending', 'running') ORDER BY id LIMIT 1);
    RETURN NULL;
END $$;"
    };
}

/// Version 5: claims that cost the same at any backlog, and counts that do not grow with the
/// inbox. A queued job that waits behind an
/// earlier one of its chat is marked `waiting` (by the claim that finds it so), and the index
/// the claim reads (`periskope_inbox_ready`, in [`due_at`] order) holds only the jobs that are
/// not: each chat's first queued job, and the jobs of no chat. When a chat's queued job is
/// settled or deleted, a trigger unmarks the chat's next one (at the end of the statement, so
/// it sees what the statement marked). `periskope_inbox_counts` holds the jobs and attempts of
/// each state, as changes appended by statement triggers in the transaction of each change:
/// [`InboxStore::stats`] folds and sums them, and never reads the jobs.
const SCHEMA_V5: &str = concat!(
    "
ALTER TABLE periskope_inbox_jobs ADD COLUMN waiting BOOLEAN NOT NULL DEFAULT false;
DROP INDEX periskope_inbox_due;
CREATE INDEX periskope_inbox_ready ON periskope_inbox_jobs ((",
    due_at!(),
    "), id)
WHERE state IN ('pending', 'running') AND NOT waiting;
CREATE INDEX periskope_inbox_queued ON periskope_inbox_jobs (ordering_key, id)
WHERE state IN ('pending', 'running') AND ordering_key IS NOT NULL;
",
    next_of_chat!(),
    "
CREATE TRIGGER periskope_inbox_next_after_settling AFTER UPDATE OF state ON periskope_inbox_jobs FOR EACH ROW
WHEN (OLD.ordering_key IS NOT NULL AND OLD.state IN ('pending', 'running') AND NEW.state IN ('done', 'dead'))
EXECUTE FUNCTION periskope_inbox_next_of_chat();
CREATE TRIGGER periskope_inbox_next_after_deleting AFTER DELETE ON periskope_inbox_jobs FOR EACH ROW
WHEN (OLD.ordering_key IS NOT NULL AND OLD.state IN ('pending', 'running'))
EXECUTE FUNCTION periskope_inbox_next_of_chat();
CREATE TABLE periskope_inbox_counts (state TEXT NOT NULL, jobs BIGINT NOT NULL, attempts BIGINT NOT NULL);
INSERT INTO periskope_inbox_counts
SELECT state, count(*), coalesce(sum(attempts), 0) FROM periskope_inbox_jobs GROUP BY state;
CREATE FUNCTION periskope_inbox_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    ",
    count_change!("SELECT state, 1 AS jobs, attempts FROM counted_in"),
    "
    RETURN NULL;
END $$;
CREATE FUNCTION periskope_inbox_count_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    ",
    count_change!(
        "SELECT state, 1 AS jobs, attempts FROM counted_in UNION ALL SELECT state, -1, -attempts FROM counted_out"
    ),
    "
    RETURN NULL;
END $$;
CREATE FUNCTION periskope_inbox_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    ",
    count_change!("SELECT state, -1 AS jobs, -attempts AS attempts FROM counted_out"),
    "
    RETURN NULL;
END $$;
CREATE TRIGGER periskope_inbox_count_inserted AFTER INSERT ON periskope_inbox_jobs
REFERENCING NEW TABLE AS counted_in FOR EACH STATEMENT EXECUTE FUNCTION periskope_inbox_count_inserted();
CREATE TRIGGER periskope_inbox_count_changed AFTER UPDATE ON periskope_inbox_jobs
REFERENCING OLD TABLE AS counted_out NEW TABLE AS counted_in FOR EACH STATEMENT
EXECUTE FUNCTION periskope_inbox_count_changed();
CREATE TRIGGER periskope_inbox_count_deleted AFTER DELETE ON periskope_inbox_jobs
REFERENCING OLD TABLE AS counted_out FOR EACH STATEMENT EXECUTE FUNCTION periskope_inbox_count_deleted();
"
);

/// Version 6, for [`Alert::DeadLetter`](super::Alert::DeadLetter): the claim counter under which
/// each dead letter's death was told. A job is dead and untold while it differs from `claims`
/// (a retried job dies again under a later claim). The dead letters of earlier versions count
/// as told: an upgrade does not tell them all at once.
const SCHEMA_V6: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN alerted_claims BIGINT;
UPDATE periskope_inbox_jobs SET alerted_claims = claims WHERE state = 'dead';
CREATE INDEX periskope_inbox_unalerted ON periskope_inbox_jobs (id)
WHERE state = 'dead' AND alerted_claims IS DISTINCT FROM claims;
";

/// Version 7: the context of the span that accepted each delivery, as a W3C `traceparent`
/// ([`NewDelivery::traceparent`]); none for the jobs stored before.
const SCHEMA_V7: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN traceparent TEXT;
";

/// Version 8: nothing. A withdrawn pre-release build wrote a version 8 of its own (another body
/// for [`next_of_chat!`]), which version 9 writes over.
const SCHEMA_V8: &str = "";

/// Version 9: a batch of completions brings each chat's next job back once, not once per job
/// ([`complete_batch`]). With runs, most settled jobs are followed by a job already running,
/// and the trigger's work for them (a lookup and an update, each firing the counts' trigger)
/// was a tenth of the machine while draining. `periskope_inbox_complete` settles the batch,
/// then, in a statement of its own (so that it sees the claims that the settlement waited for,
/// as the trigger does), unmarks the first queued job of each chat it settled. The trigger
/// skips the settlements of that function (a setting local to its transaction) and stays for
/// every other: jobs that die, deleted ones, and the completions of a replica still running
/// an earlier version during a rolling upgrade.
const SCHEMA_V9: &str = concat!(
    next_of_chat!(),
    "
DROP TRIGGER periskope_inbox_next_after_settling ON periskope_inbox_jobs;
CREATE TRIGGER periskope_inbox_next_after_settling AFTER UPDATE OF state ON periskope_inbox_jobs FOR EACH ROW
WHEN (OLD.ordering_key IS NOT NULL AND OLD.state IN ('pending', 'running') AND NEW.state IN ('done', 'dead')
      AND current_setting('periskope.completing_batch', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION periskope_inbox_next_of_chat();
CREATE FUNCTION periskope_inbox_complete(
    lease_ids BIGINT[], lease_claims BIGINT[], lease_handled_at BIGINT[], lease_attempts INTEGER[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    settled_chats TEXT[];
BEGIN
    PERFORM set_config('periskope.completing_batch', 'on', true);
    WITH lease AS (
        SELECT * FROM unnest(lease_ids, lease_claims, lease_handled_at, lease_attempts)
            AS lease (id, claims, handled_at, attempts)
    ), settled AS (
        UPDATE periskope_inbox_jobs AS job
        SET state = 'done', handled_at = lease.handled_at, lease_until = NULL, waiting = false,
            attempts = lease.attempts
        FROM lease WHERE job.id = lease.id AND job.claims = lease.claims AND job.state = 'running'
        RETURNING job.id, job.ordering_key, lease.handled_at
    ), freed AS (
        DELETE FROM periskope_inbox_chats AS chat USING settled WHERE chat.job_id = settled.id
    ), ended AS (
        UPDATE periskope_inbox_attempts AS attempt SET outcome = 'handled', ended_at = settled.handled_at
        FROM settled WHERE attempt.job_id = settled.id AND attempt.outcome = 'running'
    )
    SELECT array_agg(DISTINCT settled.ordering_key) INTO settled_chats FROM settled
    WHERE settled.ordering_key IS NOT NULL;
    UPDATE periskope_inbox_jobs AS job SET waiting = false
    FROM unnest(settled_chats) AS settled (chat) CROSS JOIN LATERAL (
        SELECT first.id FROM periskope_inbox_jobs AS first
        WHERE first.ordering_key = settled.chat AND first.state IN ('pending', 'running')
        ORDER BY first.id LIMIT 1
    ) AS head
    WHERE job.id = head.id AND job.waiting;
END $$;
"
);

/// What takes a database from each version to the next: `MIGRATIONS[v]` upgrades version `v`
/// (version 0: no schema yet).
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] =
    [SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8, SCHEMA_V9];

/// How many attempts of each job are kept by default.
const DEFAULT_ATTEMPTS_KEPT: usize = 10;

const SUMMARY_COLUMNS: &str =
    "id, event, dedup_key, state, attempts, last_error, received_at, run_at, lease_until, handled_at";

/// The inbox in PostgreSQL: every replica connects to the same database and shares the queue.
///
/// Cloning shares the connections. A connection that broke (the server restarted, a proxy or
/// an administrator closed it) is opened again by the next call that picks it; the calls that
/// reach it before its loss is noticed fail with [`InboxError::Storage`] (deliveries are
/// answered `503` and sent again by Periskope, claims are retried by the worker), and nothing
/// committed is lost.
#[derive(Clone)]
pub struct PostgresStore {
    connections: Arc<Connections>,
    /// Concurrent deliveries, stored by one statement and one commit ([`insert_batch`]).
    inserts: Arc<Batches<NewDelivery, Stored>>,
    /// Concurrent completions, settled by one statement and one commit ([`complete_batch`]).
    completions: Arc<Batches<(Lease, i64), ()>>,
    /// How many attempts of each job the history keeps ([`PostgresOptions::attempts_kept`]).
    attempts_kept: usize,
    /// Deliveries stored by other replicas, announced ([`listen`]).
    arrivals: Arc<Arrivals>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("connections", &self.connections.slots.len()).finish()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, InboxError>> + Send>>;

fn storage_error(error: tokio_postgres::Error) -> InboxError {
    InboxError::Storage(reason(&error))
}

/// The server's own message and SQLSTATE for a database error, the cause for the others; never
/// the server's detail, which quotes the values of the row (bodies, keys).
fn reason(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// How long opening one connection may take when the configuration sets no `connect_timeout`:
/// a call waiting on a reconnect to an unreachable server must fail, not hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to connect a [`PostgresStore`]: [`PostgresStore::options`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    connections: usize,
    timeout: Duration,
    attempts_kept: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            connections: DEFAULT_CONNECTIONS,
            timeout: DEFAULT_TIMEOUT,
            attempts_kept: DEFAULT_ATTEMPTS_KEPT,
        }
    }
}

impl PostgresOptions {
    /// Opens `connections` connections (at least 1). Default: 8.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections.max(1);
        self
    }

    /// Bounds every call in time (at least 1 ms). Default: 30 s.
    ///
    /// A call (waiting for its connection, reopening it, the statement) that takes longer fails
    /// with [`InboxError::Storage`]: a delivery is answered `503`, a worker's claim is retried.
    /// The server stops the statement too: each connection sets `statement_timeout` to this
    /// value, unless the configuration (connection string, role, database or server) sets one.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Keeps the last `attempts` attempts of each job (at least 1) for its
    /// [attempt history](super::ConsoleStore::attempts). Default: 10.
    pub fn attempts_kept(mut self, attempts: usize) -> Self {
        self.attempts_kept = attempts.max(1);
        self
    }

    /// Connects to `config` (`postgres://user@host:port/db` or `host=... user=...`), and
    /// creates or migrates the schema. Must run inside a tokio runtime, which drives the
    /// connections.
    pub async fn connect(&self, config: &str) -> Result<PostgresStore, InboxError> {
        let mut parsed: tokio_postgres::Config = config.parse().map_err(|error| InboxError::Open {
            location: "postgres".to_owned(),
            reason: format!("{error}"),
        })?;
        if parsed.get_connect_timeout().is_none() {
            parsed.connect_timeout(CONNECT_TIMEOUT);
        }
        let location = describe(&parsed);
        let open_error = |reason: String| InboxError::Open { location: location.clone(), reason };
        let mut slots = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            let client = tokio::time::timeout(self.timeout, open(&parsed, self.timeout))
                .await
                .map_err(|_| open_error(timed_out(self.timeout)))?
                .map_err(|error| open_error(reason(&error)))?;
            slots.push(tokio::sync::Mutex::new(Arc::new(Session::new(client))));
        }
        let connections = Connections {
            config: parsed,
            slots: slots.into(),
            next: AtomicUsize::new(0),
            timeout: self.timeout,
        };
        let first = connections.next().await?;
        // Bounded like every call: a migration stuck behind another replica's lock or a silent
        // server fails the connect, and dropping the connections ends its session and its lock.
        let migrated = tokio::time::timeout(self.timeout, migrate(&first.client))
            .await
            .map_err(|_| open_error(timed_out(self.timeout)))?;
        migrated.map_err(|error| match error {
            Migration::Postgres(error) => open_error(reason(&error)),
            Migration::Newer(found) => {
                InboxError::NewerSchema { found: i64::from(found), supported: i64::from(SCHEMA_VERSION) }
            }
        })?;
        let connections = Arc::new(connections);
        // Half the connections may write batches at once; the other half serve the claims,
        // the console and the calls that are not batched.
        let writers = (self.connections / 2).max(1);
        let announcer = Arc::new(Announcer::start(Arc::clone(&connections)));
        let inserts = {
            let connections = Arc::clone(&connections);
            Batches::start(writers, move |deliveries| {
                let (connections, announcer) = (Arc::clone(&connections), Arc::clone(&announcer));
                async move {
                    let stored = insert_batch(connections, deliveries).await?;
                    if stored.contains(&Stored::New) {
                        announcer.announce();
                    }
                    Ok(stored)
                }
            })
        };
        // Completions are written by one batch at a time: the jobs of a run are settled while
        // the next ones run, and two batches settling one chat's jobs at once would each lock
        // the chat's next job (the trigger that brings it back) in their own order.
        let completions = {
            let connections = Arc::clone(&connections);
            Batches::start(1, move |leases| complete_batch(Arc::clone(&connections), leases))
        };
        let arrivals = Arc::new(Arrivals::listen(connections.config.clone()));
        Ok(PostgresStore {
            arrivals,
            connections,
            inserts: Arc::new(inserts),
            completions: Arc::new(completions),
            attempts_kept: self.attempts_kept,
        })
    }
}

impl PostgresStore {
    /// How to connect: connections and time bound.
    pub fn options() -> PostgresOptions {
        PostgresOptions::default()
    }

    /// Connects to `config` with the default [`PostgresOptions`] (8 connections, calls bounded
    /// by 30 s).
    pub async fn connect(config: &str) -> Result<PostgresStore, InboxError> {
        PostgresStore::options().connect(config).await
    }

    /// [`PostgresStore::connect`] with `connections` connections (at least 1).
    pub async fn connect_with(config: &str, connections: usize) -> Result<PostgresStore, InboxError> {
        PostgresStore::options().connections(connections).connect(config).await
    }

    /// The connections, to pick one inside a call's future.
    fn connections(&self) -> Arc<Connections> {
        Arc::clone(&self.connections)
    }
}

/// The most statements one connection keeps prepared; past it, the cache starts again.
const MAX_PREPARED: usize = 64;

/// One connection and the statements prepared on it: a statement is parsed and planned once per
/// connection, not at every call (a claim's statement is long).
struct Session {
    client: Client,
    prepared: std::sync::Mutex<std::collections::HashMap<String, Statement>>,
}

impl Session {
    fn new(client: Client) -> Self {
        Session { client, prepared: Default::default() }
    }

    /// `statement`, prepared on this connection once.
    async fn prepared(&self, statement: &str) -> Result<Statement, InboxError> {
        if let Some(prepared) = self.cache().get(statement) {
            return Ok(prepared.clone());
        }
        let prepared = self.client.prepare(statement).await.map_err(storage_error)?;
        let mut cache = self.cache();
        if cache.len() >= MAX_PREPARED {
            cache.clear();
        }
        cache.insert(statement.to_owned(), prepared.clone());
        Ok(prepared)
    }

    /// The error of a prepared `statement`, which is prepared again at its next call: its plan
    /// may have gone stale (a schema another replica upgraded).
    fn failed(&self, statement: &str, error: tokio_postgres::Error) -> InboxError {
        self.cache().remove(statement);
        storage_error(error)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Statement>> {
        self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The store's connections, each opened again on first use after it broke.
struct Connections {
    config: tokio_postgres::Config,
    slots: Box<[tokio::sync::Mutex<Arc<Session>>]>,
    next: AtomicUsize,
    /// How long one call may take, from picking its connection to its answer.
    timeout: Duration,
}

impl Connections {
    /// The next connection, round robin; a closed one is replaced first.
    ///
    /// The slot's lock is held only to check it and, when it is closed, to reopen it, so one
    /// caller reconnects while the others that picked the slot wait for it. A caller dropped
    /// while reconnecting releases the lock and leaves the slot closed: the next one retries.
    async fn next(&self) -> Result<Arc<Session>, InboxError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if slot.client.is_closed() {
            *slot = Arc::new(Session::new(open(&self.config, self.timeout).await.map_err(storage_error)?));
        }
        Ok(Arc::clone(&slot))
    }

    /// Runs `statement` on the next connection; the number of rows it changed.
    async fn execute(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, InboxError> {
        self.run(
            statement,
            |session, prepared| async move { session.client.execute(&prepared, params).await },
        )
        .await
    }

    /// Runs `statement` on the next connection; its rows.
    async fn query(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, InboxError> {
        self.run(statement, |session, prepared| async move { session.client.query(&prepared, params).await })
            .await
    }

    /// Runs `statement` on the next connection; its row, if any.
    async fn query_opt(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, InboxError> {
        self.run(
            statement,
            |session, prepared| async move { session.client.query_opt(&prepared, params).await },
        )
        .await
    }

    /// `call` with `statement` prepared on the next connection, bounded in time, and again (at
    /// most [`RETRIES_AFTER_ABORT`] more times) when PostgreSQL aborted it to break a deadlock
    /// or a serialization conflict. Each statement here is a transaction of its own, which the
    /// abort rolled back whole, so running it again is safe; without it, a batch of completions
    /// chosen as a deadlock's victim (several replicas claiming and settling at once) would
    /// leave its jobs to run again once their leases expire.
    async fn run<T, Call, Answer>(&self, statement: &str, call: Call) -> Result<T, InboxError>
    where
        Call: Fn(Arc<Session>, Statement) -> Answer,
        Answer: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.bounded(async {
            let mut aborted = 0;
            loop {
                let session = self.next().await?;
                let prepared = session.prepared(statement).await?;
                match call(Arc::clone(&session), prepared).await {
                    Ok(answer) => return Ok(answer),
                    Err(error) if aborted < RETRIES_AFTER_ABORT && rolled_back_by_server(&error) => {
                        aborted += 1
                    }
                    Err(error) => return Err(session.failed(statement, error)),
                }
            }
        })
        .await
    }

    /// `call`, failed once it took longer than the timeout. Dropping it leaves the statement to
    /// the server, which stops it at its `statement_timeout`.
    async fn bounded<T>(&self, call: impl Future<Output = Result<T, InboxError>>) -> Result<T, InboxError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| Err(InboxError::Storage(timed_out(self.timeout))))
    }
}

/// How many times a statement PostgreSQL aborted to break a deadlock or a serialization
/// conflict runs again before its error is answered.
const RETRIES_AFTER_ABORT: usize = 3;

/// Whether PostgreSQL aborted the statement's transaction to let a conflicting one go on
/// (SQLSTATE 40P01, a deadlock's victim, or 40001, a serialization failure): nothing of it was
/// kept.
fn rolled_back_by_server(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn timed_out(timeout: Duration) -> String {
    format!("PostgreSQL did not answer within {timeout:?}")
}

/// Opens one connection, spawns the task that drives it, and bounds its statements by
/// `timeout` on the server, unless the configuration already set a `statement_timeout`: the
/// server then stops a statement its caller gave up on, instead of holding locks for it.
async fn open(config: &tokio_postgres::Config, timeout: Duration) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(_error) = connection.await {
            #[cfg(feature = "tracing")]
            tracing::error!(error = %_error, "periskope inbox lost a PostgreSQL connection");
        }
    });
    // PostgreSQL takes at most i32::MAX milliseconds.
    let millis = timeout.as_millis().clamp(1, u128::from(i32::MAX.unsigned_abs())).to_string();
    client
        .execute(
            "SELECT set_config('statement_timeout', $1, false) WHERE current_setting('statement_timeout') = '0'",
            &[&millis],
        )
        .await?;
    Ok(client)
}

/// Host, port and database, never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

enum Migration {
    Postgres(tokio_postgres::Error),
    Newer(i32),
}

impl From<tokio_postgres::Error> for Migration {
    fn from(error: tokio_postgres::Error) -> Self {
        Migration::Postgres(error)
    }
}

/// Creates or upgrades the schema under an advisory lock: replicas starting together wait for
/// the first one's migration instead of racing it.
async fn migrate(client: &Client) -> Result<(), Migration> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = async {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS periskope_inbox_schema (version INTEGER NOT NULL)")
            .await?;
        let version: Option<i32> =
            client.query_opt("SELECT max(version) FROM periskope_inbox_schema", &[]).await?.and_then(|row| row.get(0));
        let found = version.unwrap_or(0);
        match usize::try_from(found).ok().and_then(|found| MIGRATIONS.get(found..)) {
            Some([]) => {}
            Some(upgrades) => {
                client
                    .batch_execute(&format!(
                        "BEGIN; {} INSERT INTO periskope_inbox_schema (version) VALUES ({SCHEMA_VERSION}); COMMIT;",
                        upgrades.concat()
                    ))
                    .await?;
            }
            None => return Err(Migration::Newer(found)),
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

fn attempts(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

impl InboxStore for PostgresStore {
    /// Boxed: a network round trip dwarfs the allocation.
    type InsertFuture = BoxFuture<Stored>;

    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture {
        let inserts = Arc::clone(&self.inserts);
        Box::pin(async move { inserts.call(delivery).await })
    }

    fn claim(
        &self,
        request: ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, InboxError>> + Send {
        let connections = self.connections();
        let attempts_kept = self.attempts_kept;
        async move {
            // Leases are compared on the database's clock, one for every replica; the request's
            // `now` counts as an offset from this process's clock (a test's simulated time).
            let offset = to_millis(request.now).saturating_sub(to_millis(SystemTime::now()));
            let lease = i64::try_from(request.lease.as_millis()).unwrap_or(i64::MAX);
            let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
            let scanned = limit.saturating_add(MAX_MARKED_PER_CLAIM);
            let followers = i64::try_from(request.run.saturating_sub(1)).unwrap_or(i64::MAX);
            let run_bytes = i64::try_from(MAX_RUN_BYTES).unwrap_or(i64::MAX);
            let max_attempts = attempts(request.max_attempts);
            let rows = connections
                .query(
                    // `due` reads a snapshot; `chats` is what decides. Its insert conflicts with
                    // any other claim of the chat, waits for that claim to commit, and takes the
                    // chat only from a lease that expired. A job is claimed only through it.
                    concat!(
                    "WITH clock AS MATERIALIZED (
                         SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $1 AS now
                     ), leased AS MATERIALIZED (
                         SELECT now, now + LEAST($4, 9223372036854775807 - now) AS until FROM clock
                     ), candidates AS MATERIALIZED (
                         SELECT id, ordering_key, attempts, ",
                    due_at!(),
                    " AS due_at
                         FROM periskope_inbox_jobs
                         WHERE state IN ('pending', 'running') AND NOT waiting
                           AND ",
                    due_at!(),
                    " <= (SELECT now FROM leased)
                         ORDER BY ",
                    due_at!(),
                    ", id LIMIT $6
                         FOR UPDATE SKIP LOCKED
                     ), firsts AS MATERIALIZED (
                         -- Once per chat, not per candidate: the lookup walks the index entries
                         -- that the chat's settled jobs left behind until the next vacuum.
                         SELECT chat.ordering_key, (
                             SELECT first.id FROM periskope_inbox_jobs AS first
                             WHERE first.ordering_key = chat.ordering_key AND first.state IN ('pending', 'running')
                             ORDER BY first.id LIMIT 1
                         ) AS first_id
                         FROM (SELECT DISTINCT ordering_key FROM candidates WHERE ordering_key IS NOT NULL) AS chat
                     ), placed AS MATERIALIZED (
                         SELECT candidate.*, firsts.first_id
                         FROM candidates AS candidate LEFT JOIN firsts USING (ordering_key)
                     ), due AS MATERIALIZED (
                         SELECT id, ordering_key, attempts FROM placed WHERE ordering_key IS NULL OR first_id = id
                         ORDER BY due_at, id LIMIT $2
                     ), queued_behind AS MATERIALIZED (
                         SELECT first.id AS head, next.id, next.bytes, next.may_follow
                         FROM due AS first CROSS JOIN LATERAL (
                             SELECT job.id, octet_length(job.body) AS bytes, job.attempts = 0 AND job.attempts < $3
                                    AND ",
                    due_at!(),
                    " <= (SELECT now FROM leased) AS may_follow
                             FROM periskope_inbox_jobs AS job
                             WHERE job.ordering_key = first.ordering_key AND job.id > first.id
                               AND job.state IN ('pending', 'running')
                             ORDER BY job.id LIMIT $7
                         ) AS next
                         WHERE first.attempts = 0 AND first.ordering_key IS NOT NULL
                     ), behind_locked AS MATERIALIZED (
                         -- A job another claim holds (to mark it) ends the run before it: a
                         -- claim never waits on another's rows, so claims never deadlock.
                         SELECT id FROM periskope_inbox_jobs WHERE id IN (SELECT id FROM queued_behind)
                         FOR UPDATE SKIP LOCKED
                     ), runs AS MATERIALIZED (
                         SELECT id, head, follows FROM (
                             SELECT id, head,
                                    coalesce(lag(id) OVER (PARTITION BY head ORDER BY id), head) AS follows,
                                    bool_and(may_follow AND id IN (SELECT id FROM behind_locked))
                                        OVER (PARTITION BY head ORDER BY id) AS unbroken,
                                    sum(bytes) OVER (PARTITION BY head ORDER BY id) AS bytes
                             FROM queued_behind
                         ) AS run WHERE unbroken AND bytes <= $8
                     ), blockers AS MATERIALIZED (
                         SELECT id FROM periskope_inbox_jobs
                         WHERE id IN (SELECT first_id FROM placed WHERE first_id <> id) AND state IN ('pending', 'running')
                         FOR UPDATE SKIP LOCKED
                     ), marked AS (
                         UPDATE periskope_inbox_jobs AS job SET waiting = true FROM placed
                         WHERE job.id = placed.id AND placed.first_id <> placed.id
                           AND placed.first_id IN (SELECT id FROM blockers)
                           -- A job that follows in a run is left to `followed` (a row is
                           -- updated once a statement), which leaves it unmarked: the trigger
                           -- that unmarks a chat's next job leaves a run in flight alone.
                           AND placed.id NOT IN (SELECT id FROM runs)
                     ), unmarked AS (
                         UPDATE periskope_inbox_jobs SET waiting = false WHERE waiting AND id IN (SELECT id FROM blockers)
                     ), chats AS (
                         INSERT INTO periskope_inbox_chats AS chat (ordering_key, job_id, lease_until)
                         SELECT ordering_key, coalesce((SELECT max(runs.id) FROM runs WHERE runs.head = due.id), id),
                                (SELECT until FROM leased)
                         FROM due WHERE ordering_key IS NOT NULL AND attempts < $3
                         ON CONFLICT (ordering_key) DO UPDATE
                         SET job_id = excluded.job_id, lease_until = excluded.lease_until
                         WHERE chat.lease_until <= (SELECT now FROM leased) OR chat.job_id = excluded.job_id
                         RETURNING ordering_key
                     ), dead AS (
                         UPDATE periskope_inbox_jobs AS job
                         SET state = 'dead', lease_until = NULL, dead_at = (SELECT now FROM leased),
                             last_error = coalesce(job.last_error || '; ', '') || $5
                         FROM due WHERE job.id = due.id AND job.attempts >= $3
                         RETURNING job.id, job.attempts, job.event, job.dedup_key, job.body, job.signing_key,
                                   job.received_at, job.path, job.state, job.claims, job.traceparent
                     ), freed AS (
                         DELETE FROM periskope_inbox_chats AS chat USING dead WHERE chat.job_id = dead.id
                     ), claimed AS (
                         UPDATE periskope_inbox_jobs AS job
                         SET state = 'running', attempts = job.attempts + 1, claims = job.claims + 1,
                             lease_until = (SELECT until FROM leased)
                         FROM due WHERE job.id = due.id AND job.attempts < $3
                           AND (due.ordering_key IS NULL OR due.ordering_key IN (SELECT ordering_key FROM chats))
                         RETURNING job.id, job.attempts, job.event, job.dedup_key, job.body, job.signing_key,
                                   job.received_at, job.path, job.state, job.claims, job.traceparent
                     ), followed AS (
                         UPDATE periskope_inbox_jobs AS job
                         SET state = 'running', claims = job.claims + 1, lease_until = (SELECT until FROM leased),
                             waiting = false
                         FROM runs WHERE job.id = runs.id AND runs.head IN (SELECT id FROM claimed)
                         RETURNING job.id, job.attempts + 1 AS attempts, job.event, job.dedup_key, job.body,
                                   job.signing_key, job.received_at, job.path, job.state, job.claims, job.traceparent,
                                   runs.follows
                     ), abandoned AS (
                         UPDATE periskope_inbox_attempts AS attempt SET outcome = 'abandoned', ended_at = (SELECT now FROM leased)
                         FROM (SELECT id FROM due WHERE attempts >= $3
                               UNION ALL SELECT id FROM claimed UNION ALL SELECT id FROM followed) AS taken
                         WHERE attempt.job_id = taken.id AND attempt.outcome = 'running'
                     ), opened AS (
                         INSERT INTO periskope_inbox_attempts (job_id, number, started_at)
                         SELECT id, attempts, (SELECT now FROM leased) FROM claimed
                         UNION ALL SELECT id, attempts, (SELECT now FROM leased) FROM followed
                     )
                     SELECT *, NULL::BIGINT FROM claimed UNION ALL SELECT * FROM followed
                     UNION ALL SELECT *, NULL::BIGINT FROM dead"
                    ),
                    &[&offset, &limit, &max_attempts, &lease, &LEASE_EXPIRED, &scanned, &followers, &run_bytes],
                )
                .await?;
            // The jobs that became dead letters instead (their last attempt's lease expired).
            let (dead, rows): (Vec<Row>, Vec<Row>) =
                rows.into_iter().partition(|row| row.get::<_, &str>(8) == JobState::Dead.as_str());
            for job in dead.iter().map(claimed_job) {
                super::log_dead_letter(&job.event, job.id, job.attempt);
            }
            let mut jobs: Vec<ClaimedJob> = rows.iter().map(claimed_job).collect();
            jobs.sort_by_key(|job| job.id);
            // Each claim opens one attempt: a job claimed no more than `attempts_kept` times has
            // nothing to forget, and most claims skip this statement and its commit.
            let ids: Vec<JobId> = jobs
                .iter()
                .filter(|job| job.fencing_token > attempts_kept as u64)
                .map(|job| job.id)
                .collect();
            // The jobs are claimed: a failure here must not hide them from the worker. Their
            // histories are trimmed again at their next claim.
            if !ids.is_empty()
                && let Err(_error) = console::forget_old_attempts(&connections, &ids, attempts_kept).await
            {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "periskope inbox could not trim attempt histories");
            }
            Ok(jobs)
        }
    }

    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        let completions = Arc::clone(&self.completions);
        async move { completions.call((lease, to_millis(now))).await }
    }

    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        let connections = self.connections();
        let error = escape(&bounded_error(error, MAX_ERROR_LEN));
        let ended_at = to_millis(SystemTime::now());
        let dead_at = retry_at.is_none().then_some(ended_at);
        async move {
            let (state, run_at) = match retry_at {
                Some(at) => (JobState::Pending, Some(to_millis(at))),
                None => (JobState::Dead, None),
            };
            connections
                .execute(
                    "WITH settled AS (
                         UPDATE periskope_inbox_jobs
                         SET state = $3, run_at = coalesce($4, run_at), last_error = $5, lease_until = NULL,
                             dead_at = $6, waiting = false, attempts = $8
                         WHERE id = $1 AND claims = $2 AND state = 'running' RETURNING id
                     ), freed AS (
                         DELETE FROM periskope_inbox_chats AS chat USING settled WHERE chat.job_id = settled.id
                     )
                     UPDATE periskope_inbox_attempts AS attempt SET outcome = 'failed', ended_at = $7, error = $5
                     FROM settled WHERE attempt.job_id = settled.id AND attempt.outcome = 'running'",
                    &[
                        &lease.id,
                        &lease.stored_token(),
                        &state.as_str(),
                        &run_at,
                        &error,
                        &dead_at,
                        &ended_at,
                        &attempts(lease.attempt),
                    ],
                )
                .await?;
            Ok(())
        }
    }

    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        let connections = self.connections();
        async move {
            connections
                .execute(
                    "WITH settled AS (
                         UPDATE periskope_inbox_jobs
                         SET state = 'pending', attempts = $4, run_at = $3, lease_until = NULL, waiting = false
                         WHERE id = $1 AND claims = $2 AND state = 'running' RETURNING id
                     ), freed AS (
                         DELETE FROM periskope_inbox_chats AS chat USING settled WHERE chat.job_id = settled.id
                     )
                     UPDATE periskope_inbox_attempts AS attempt SET outcome = 'released', ended_at = $3
                     FROM settled WHERE attempt.job_id = settled.id AND attempt.outcome = 'running'",
                    &[&lease.id, &lease.stored_token(), &to_millis(now), &attempts(lease.attempt.saturating_sub(1))],
                )
                .await?;
            Ok(())
        }
    }

    fn renew(
        &self,
        lease: Lease,
        until: SystemTime,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        let connections = self.connections();
        async move {
            // On the database's clock, as the claim: `until` counts from this process's clock.
            let left = to_millis(until).saturating_sub(to_millis(SystemTime::now()));
            let renewed = connections
                .query(
                    "WITH clock AS MATERIALIZED (
                         SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT AS now
                     ), leased AS MATERIALIZED (
                         SELECT now + LEAST($3, 9223372036854775807 - now) AS until FROM clock
                     ), renewed AS (
                         UPDATE periskope_inbox_jobs SET lease_until = (SELECT until FROM leased), waiting = false
                         WHERE id = $1 AND claims = $2 AND state = 'running' RETURNING id, ordering_key
                     ), chat AS (
                         -- A run holds its chat while any of its jobs runs, not only its last.
                         UPDATE periskope_inbox_chats AS chat SET lease_until = GREATEST(chat.lease_until, (SELECT until FROM leased))
                         FROM renewed WHERE chat.ordering_key = renewed.ordering_key
                     )
                     SELECT id FROM renewed",
                    &[&lease.id, &lease.stored_token(), &left],
                )
                .await?;
            Ok(!renewed.is_empty())
        }
    }

    /// A claim costs mostly per claim: under the draining benchmark's load, about 27 ms for 129
    /// jobs and 31 ms for 288. Behind a backlog, a worker that claims at most every 40 ms takes
    /// about twice as many jobs a claim, and handled as many jobs as were acknowledged (0.99x
    /// and 1.00x in two runs, against 0.91x; `docs/PERFORMANCE.md`, Draining).
    fn busy_claim_interval(&self) -> Duration {
        Duration::from_millis(40)
    }

    fn stored_elsewhere(&self) -> impl Future<Output = ()> + Send {
        self.arrivals.next()
    }

    fn holds(&self, lease: Lease) -> impl Future<Output = Result<bool, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let held = connections
                .query_opt(
                    "SELECT 1 FROM periskope_inbox_jobs WHERE id = $1 AND claims = $2 AND state = 'running'",
                    &[&lease.id, &lease.stored_token()],
                )
                .await?;
            Ok(held.is_some())
        }
    }

    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
            let state = query.state.map(JobState::as_str);
            let rows = connections
                .query(
                    &format!(
                        "SELECT {SUMMARY_COLUMNS} FROM periskope_inbox_jobs
                         WHERE ($1::TEXT IS NULL OR state = $1) AND id > $2 ORDER BY id LIMIT $3"
                    ),
                    &[&state, &query.after.unwrap_or(0), &limit],
                )
                .await?;
            rows.iter().map(job_summary).collect()
        }
    }

    fn get(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let row = connections
                .query_opt(
                    &format!(
                        "SELECT {SUMMARY_COLUMNS}, body, signing_key, ordering_key, path FROM periskope_inbox_jobs
                         WHERE id = $1"
                    ),
                    &[&id],
                )
                .await?;
            row.map(|row| {
                Ok(JobRecord {
                    summary: job_summary(&row)?,
                    body: Bytes::from(row.get::<_, Vec<u8>>(10)),
                    signing_key: row.get::<_, Option<String>>(11).map(unescape),
                    ordering_key: row.get::<_, Option<String>>(12).map(unescape),
                    path: unescape(row.get(13)),
                })
            })
            .transpose()
        }
    }

    fn retry(
        &self,
        selection: Selection,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (id, state) = selection_params(selection);
            let changed = connections
                .execute(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'pending', attempts = 0, run_at = $3, lease_until = NULL, dead_at = NULL, waiting = false
                     WHERE state IN ('pending', 'dead') AND ($1::BIGINT IS NULL OR id = $1)
                       AND ($2::TEXT IS NULL OR state = $2)",
                    &[&id, &state, &to_millis(now)],
                )
                .await?;
            Ok(changed)
        }
    }

    fn purge(&self, selection: Selection) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (id, state) = selection_params(selection);
            let deleted = connections
                .execute(
                    "DELETE FROM periskope_inbox_jobs
                     WHERE ($1::BIGINT IS NULL OR id = $1) AND ($2::TEXT IS NULL OR state = $2)",
                    &[&id, &state],
                )
                .await?;
            Ok(deleted)
        }
    }

    fn purge_handled(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let deleted = delete_at_most(
                &connections,
                "DELETE FROM periskope_inbox_jobs WHERE id IN (
                     SELECT id FROM periskope_inbox_jobs WHERE state = 'done' AND handled_at < $1 LIMIT $2)",
                before,
                limit,
            )
            .await?;
            if deleted < limit as u64 {
                // Retention is done for now, and runs every minute at most: the counts' changes
                // are folded then too, so that they stay few for an inbox whose stats nobody
                // reads.
                connections.execute(FOLD_COUNTS, &[]).await?;
            }
            Ok(deleted)
        }
    }

    fn purge_dead(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            delete_at_most(
                &connections,
                "DELETE FROM periskope_inbox_jobs WHERE id IN (
                     SELECT id FROM periskope_inbox_jobs WHERE state = 'dead' AND dead_at < $1 LIMIT $2)",
                before,
                limit,
            )
            .await
        }
    }

    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send {
        let connections = self.connections();
        async move {
            // Folded first, in a transaction of its own, so that the counts stay a few rows;
            // then summed, on a snapshot of its own. A statement that read what it folded would
            // miss the rows another fold took at the same moment (its own deletion skips them,
            // and that fold's new rows are not in its snapshot): it would count them as none.
            connections.execute(FOLD_COUNTS, &[]).await?;
            let rows = connections
                .query(
                    // The first queued job by id is the one received first (ids follow arrival):
                    // read on the `(state, id)` index, however many are queued.
                    "SELECT state, sum(jobs)::BIGINT, sum(attempts)::BIGINT, (
                         SELECT received_at FROM periskope_inbox_jobs AS job
                         WHERE job.state = counts.state AND counts.state IN ('pending', 'running')
                         ORDER BY id LIMIT 1)
                     FROM periskope_inbox_counts AS counts GROUP BY state",
                    &[],
                )
                .await?;
            let mut stats = InboxStats::default();
            let mut oldest: Option<i64> = None;
            for row in rows {
                let number: u64 = row.get::<_, i64>(1).unsigned_abs();
                match JobState::from_name(row.get(0)) {
                    Some(state @ (JobState::Pending | JobState::Running)) => {
                        if state == JobState::Pending {
                            stats.pending = number;
                        } else {
                            stats.running = number;
                        }
                        stats.attempts_in_queue += row.get::<_, i64>(2).unsigned_abs();
                        if let Some(received) = row.get::<_, Option<i64>>(3) {
                            oldest = Some(oldest.map_or(received, |oldest| oldest.min(received)));
                        }
                    }
                    Some(JobState::Done) => stats.done = number,
                    Some(JobState::Dead) => stats.dead = number,
                    None => {}
                }
            }
            stats.oldest_pending_age =
                oldest.map(|received| now.duration_since(from_millis(received)).unwrap_or(Duration::ZERO));
            Ok(stats)
        }
    }

    fn unalerted_dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<UnalertedDeadLetter>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let rows = connections
                .query(
                    "SELECT id, claims, event, attempts, last_error FROM periskope_inbox_jobs
                     WHERE state = 'dead' AND alerted_claims IS DISTINCT FROM claims ORDER BY id LIMIT $1",
                    &[&i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    UnalertedDeadLetter::new(
                        row.get(0),
                        row.get::<_, i64>(1).unsigned_abs(),
                        unescape(row.get(2)),
                        row.get::<_, i32>(3).unsigned_abs(),
                        row.get::<_, Option<String>>(4).map(unescape),
                    )
                })
                .collect())
        }
    }

    fn mark_alerted(
        &self,
        job: JobId,
        fencing_token: u64,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        let connections = self.connections();
        let token = i64::try_from(fencing_token).unwrap_or(i64::MAX);
        async move {
            connections
                .execute("UPDATE periskope_inbox_jobs SET alerted_claims = $2 WHERE id = $1", &[&job, &token])
                .await?;
            Ok(())
        }
    }
}

/// Runs `delete` (parameters: a time, a limit), a statement and a commit of its own.
async fn delete_at_most(
    connections: &Connections,
    delete: &str,
    before: SystemTime,
    limit: usize,
) -> Result<u64, InboxError> {
    let (before, limit) = (to_millis(before), i64::try_from(limit).unwrap_or(i64::MAX));
    connections.execute(delete, &[&before, &limit]).await
}

/// Stores `deliveries` in one statement: each is `New` if this statement stored it, else a
/// `Duplicate` (of a job stored before, or of an earlier copy in the same batch).
///
/// Every job is stored in the claim's index; the claims mark those that wait behind an earlier
/// job of their chat. Marking them here would need a lock shared with the settlement of the
/// chat's first job (whose trigger cannot see an insert not yet committed), and claims skip
/// locked jobs: under a steady stream of inserts a chat's first job would stay locked, and
/// never be claimed.
async fn insert_batch(
    connections: Arc<Connections>,
    deliveries: Vec<NewDelivery>,
) -> Result<Vec<Stored>, InboxError> {
    let keys: Vec<String> = deliveries.iter().map(|delivery| escape(&delivery.key)).collect();
    let mut first_copies = std::collections::HashSet::new();
    let firsts: Vec<bool> = keys.iter().map(|key| first_copies.insert(key.as_str())).collect();
    let written =
        || deliveries.iter().zip(&firsts).filter(|(_, first)| **first).map(|(delivery, _)| delivery);
    let written_keys: Vec<&String> =
        keys.iter().zip(&firsts).filter(|(_, first)| **first).map(|(key, _)| key).collect();
    let events: Vec<String> = written().map(|delivery| escape(&delivery.event)).collect();
    let chats: Vec<Option<String>> =
        written().map(|delivery| delivery.ordering_key.as_deref().map(escape)).collect();
    let bodies: Vec<&[u8]> = written().map(|delivery| &delivery.body[..]).collect();
    let signing_keys: Vec<Option<String>> =
        written().map(|delivery| delivery.signing_key.as_deref().map(escape)).collect();
    let received: Vec<i64> = written().map(|delivery| to_millis(delivery.received_at)).collect();
    let paths: Vec<String> = written().map(|delivery| escape(&delivery.path)).collect();
    let traceparents: Vec<Option<String>> =
        written().map(|delivery| delivery.traceparent.as_deref().map(escape)).collect();
    let stored = connections
        .query(
            "WITH stored AS (
                 INSERT INTO periskope_inbox_jobs
                     (dedup_key, event, ordering_key, body, signing_key, received_at, run_at, path, traceparent)
                 SELECT dedup_key, event, ordering_key, body, signing_key, received_at, received_at, path, traceparent
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[])
                     AS delivery (dedup_key, event, ordering_key, body, signing_key, received_at, path, traceparent)
                 ON CONFLICT (dedup_key) DO NOTHING
                 RETURNING dedup_key
             )
             SELECT dedup_key FROM stored",
            &[&written_keys, &events, &chats, &bodies, &signing_keys, &received, &paths, &traceparents],
        )
        .await?;
    let new: std::collections::HashSet<&str> = stored.iter().map(|row| row.get::<_, &str>(0)).collect();
    Ok(keys
        .iter()
        .zip(&firsts)
        .map(
            |(key, first)| if *first && new.contains(key.as_str()) { Stored::New } else { Stored::Duplicate },
        )
        .collect())
}

/// Settles the `(lease, handled at)` pairs as handled in one call of `periskope_inbox_complete`
/// (schema version 9): one round trip and one commit. A lease that was lost (taken over,
/// settled, purged) is left alone, as one [`InboxStore::complete`] leaves it.
async fn complete_batch(
    connections: Arc<Connections>,
    leases: Vec<(Lease, i64)>,
) -> Result<Vec<()>, InboxError> {
    let ids: Vec<JobId> = leases.iter().map(|(lease, _)| lease.id).collect();
    let tokens: Vec<i64> = leases.iter().map(|(lease, _)| lease.stored_token()).collect();
    let handled_at: Vec<i64> = leases.iter().map(|(_, at)| *at).collect();
    let attempt_counts: Vec<i32> = leases.iter().map(|(lease, _)| attempts(lease.attempt)).collect();
    connections
        .execute(
            "SELECT periskope_inbox_complete($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::INTEGER[])",
            &[&ids, &tokens, &handled_at, &attempt_counts],
        )
        .await?;
    Ok(vec![(); leases.len()])
}

fn claimed_job(row: &Row) -> ClaimedJob {
    ClaimedJob {
        id: row.get(0),
        attempt: row.get::<_, i32>(1).unsigned_abs(),
        fencing_token: row.get::<_, i64>(9).unsigned_abs(),
        event: unescape(row.get(2)),
        key: unescape(row.get(3)),
        body: Bytes::from(row.get::<_, Vec<u8>>(4)),
        signing_key: row.get::<_, Option<String>>(5).map(unescape),
        received_at: from_millis(row.get(6)),
        path: unescape(row.get(7)),
        traceparent: row.get::<_, Option<String>>(10).map(unescape),
        follows: row.get(11),
    }
}

fn job_summary(row: &Row) -> Result<JobSummary, InboxError> {
    let state: &str = row.get(3);
    Ok(JobSummary {
        id: row.get(0),
        event: unescape(row.get(1)),
        key: unescape(row.get(2)),
        state: JobState::from_name(state)
            .ok_or_else(|| InboxError::Storage(format!("unknown job state {state}")))?,
        attempts: row.get::<_, i32>(4).unsigned_abs(),
        last_error: row.get::<_, Option<String>>(5).map(unescape),
        received_at: from_millis(row.get(6)),
        run_at: from_millis(row.get(7)),
        lease_until: row.get::<_, Option<i64>>(8).map(from_millis),
        handled_at: row.get::<_, Option<i64>>(9).map(from_millis),
    })
}

/// `text` as this store writes it: `TEXT` cannot hold NUL, which a signed delivery may carry
/// in its ids or event name, so NUL is written `\0` and a backslash `\\`. Distinct texts stay
/// distinct, so de-duplication keys and chats compare exactly.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '\0' => escaped.push_str("\\0"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The text [`escape`] wrote. A backslash before anything else (a row written before
/// escaping) is kept as it is.
fn unescape(text: String) -> String {
    if !text.contains('\\') {
        return text;
    }
    let mut unescaped = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            unescaped.push(character);
            continue;
        }
        match characters.next() {
            Some('0') => unescaped.push('\0'),
            Some('\\') => unescaped.push('\\'),
            Some(other) => {
                unescaped.push('\\');
                unescaped.push(other);
            }
            None => unescaped.push('\\'),
        }
    }
    unescaped
}
