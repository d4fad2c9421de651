//! [`SqliteStore`]: the embedded inbox, one SQLite file owned by one process.
//!
//! One thread owns the connection. It takes every operation waiting in its queue, runs them in
//! one transaction (each in its own savepoint, so that one failure does not undo the others),
//! commits with one fsync, and only then answers each caller: deliveries that arrive together
//! share a sync (group commit), which is what lets the inbox acknowledge thousands of
//! deliveries per second when one fsync takes most of a millisecond. An operation over every
//! job a filter or a state selects (a bulk retry or purge, retention) gets a transaction of its
//! own, so that the deliveries queued before it are committed without waiting for it.
//!
//! Reads that change nothing (the console's queries, `get`, `list`, `stats`) never enter that
//! queue: read-only connections (one by default), each owned by a thread of its own, take them
//! from a queue of their own. WAL lets them read the last commit while the writer writes, so a slow
//! console query does not hold back a delivery's `200`.
//!
//! A checkpointer thread, on a connection of its own, copies the WAL's pages into the file each
//! time the writer has appended 250, while the writer goes on: a checkpoint writes and syncs up
//! to that many pages of the file, milliseconds that no delivery waits for. SQLite's automatic
//! checkpoint is off: it runs inside the commit, before the answers, whenever the WAL holds
//! 1,000 pages, and a reader pins the pages of its snapshot until it ends. While long reads
//! overlap, no checkpoint can copy the whole WAL, it stays past that length, and every commit
//! would checkpoint, and sync the file, before its deliveries' `200`.

use std::cell::Cell;
use std::ffi::c_int;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::hooks::Wal;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::oneshot;

use self::console::{end_attempt, open_attempt};
use super::queries::AttemptOutcome;
use super::{
    ClaimRequest, ClaimedJob, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobState, JobSummary,
    LEASE_EXPIRED, Lease, ListQuery, MAX_ERROR_LEN, MAX_MARKED_PER_CLAIM, MAX_RUN_BYTES, NewDelivery,
    Selection, Stored, UnalertedDeadLetter, bounded_error, due_at, from_millis, saturating_add,
    selection_params, to_millis,
};

mod console;

/// The schema version this crate writes; kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 7;

/// At most this many queued operations share one transaction.
const MAX_BATCH: usize = 1024;

/// The checkpointer is woken each time the writer has appended this many pages to the WAL since
/// the last wake-up. A delivery's sync waits behind the device's queue, which a checkpoint's
/// sync fills with up to this many random writes: at a quarter of SQLite's own 1,000, beside a
/// bulk purge, the deliveries' p99 was lower in three runs of three (`benches/console.rs`), and
/// intake was unchanged (`benches/inbox.rs`).
const CHECKPOINT_PAGES: c_int = 250;

/// How many prepared statements each connection keeps: more than the writer runs, or than a
/// reader's queries with their filters' shapes.
const STATEMENTS_CACHED: usize = 128;

/// How many reads run at once by default ([`SqliteOptions::read_connections`]): one, so that
/// console queries take at most one core from the acceptor and the writer. On two cores, with
/// a second one, text searches took the deliveries' p99 to 3 to 6 times that of deliveries
/// alone; with one, it stayed within 1.5 times (`benches/console.rs`).
const DEFAULT_READ_CONNECTIONS: usize = 1;

const SCHEMA: &str = "
CREATE TABLE periskope_inbox_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    ordering_key TEXT,
    body BLOB NOT NULL,
    signing_key TEXT,
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    lease_until INTEGER,
    last_error TEXT,
    handled_at INTEGER
);
CREATE INDEX periskope_inbox_due ON periskope_inbox_jobs (state, run_at);
CREATE INDEX periskope_inbox_order ON periskope_inbox_jobs (ordering_key, id) WHERE ordering_key IS NOT NULL;
CREATE INDEX periskope_inbox_handled ON periskope_inbox_jobs (handled_at) WHERE state = 'done';
CREATE TABLE periskope_inbox_owner (id INTEGER PRIMARY KEY CHECK (id = 1), opened_at INTEGER NOT NULL);
";

/// Version 2: the path each delivery arrived on (`/` for the jobs stored before), and when each
/// dead letter died (the dead letters of version 1 count from the upgrade).
const SCHEMA_V2: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN path TEXT NOT NULL DEFAULT '/';
ALTER TABLE periskope_inbox_jobs ADD COLUMN dead_at INTEGER;
UPDATE periskope_inbox_jobs SET dead_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE state = 'dead';
CREATE INDEX periskope_inbox_dead ON periskope_inbox_jobs (dead_at) WHERE state = 'dead';
";

/// Version 3, for the console ([`ConsoleStore`](super::ConsoleStore)): each job's last attempts
/// (removed with their job), and an index for each of the console's queries: keyset pages by
/// state, event or chat (`ordering_key, id` already exists), received-time ranges and
/// per-minute counts, attempts ended per minute, dead letters by event.
const SCHEMA_V3: &str = "
CREATE TABLE periskope_inbox_attempts (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    outcome TEXT NOT NULL DEFAULT 'running',
    error TEXT
);
CREATE INDEX periskope_inbox_attempts_job ON periskope_inbox_attempts (job_id, id);
CREATE INDEX periskope_inbox_attempts_running ON periskope_inbox_attempts (job_id) WHERE outcome = 'running';
CREATE INDEX periskope_inbox_attempts_ended ON periskope_inbox_attempts (ended_at, outcome)
WHERE ended_at IS NOT NULL;
CREATE TRIGGER periskope_inbox_attempts_purge AFTER DELETE ON periskope_inbox_jobs
BEGIN DELETE FROM periskope_inbox_attempts WHERE job_id = old.id; END;
CREATE INDEX periskope_inbox_state ON periskope_inbox_jobs (state, id);
CREATE INDEX periskope_inbox_event ON periskope_inbox_jobs (event, id);
CREATE INDEX periskope_inbox_received ON periskope_inbox_jobs (received_at);
CREATE INDEX periskope_inbox_dead_event ON periskope_inbox_jobs (event, dead_at, id) WHERE state = 'dead';
";

/// Version 4: each job's claim counter, the fencing token of its latest claim (it only grows:
/// the attempt count goes back on a retry, a replay or a release).
const SCHEMA_V4: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
";

/// Unmarks the first queued job of the chat of `old` (a trigger's row): it waits no more.
macro_rules! next_of_chat {
    () => {
        "UPDATE periskope_inbox_jobs SET waiting = 0
         WHERE waiting = 1 AND id = (SELECT id FROM periskope_inbox_jobs
             WHERE ordering_key = old.ordering_key AND state IN ('pending', 'running') ORDER BY id LIMIT 1);"
    };
}

/// Counts the trigger's `$row` in its state.
macro_rules! count_in {
    ($row:ident) => {
        concat!(
            "INSERT INTO periskope_inbox_counts VALUES (",
            stringify!($row),
            ".state, 1, ",
            stringify!($row),
            ".attempts) ON CONFLICT (state) DO UPDATE SET jobs = jobs + 1, attempts = attempts + excluded.attempts;"
        )
    };
}

/// Counts the trigger's `$row` out of its state.
macro_rules! count_out {
    ($row:ident) => {
        concat!(
            "UPDATE periskope_inbox_counts SET jobs = jobs - 1, attempts = attempts - ",
            stringify!($row),
            ".attempts WHERE state = ",
            stringify!($row),
            ".state;"
        )
    };
}

/// Version 5: claims that cost the same at any backlog, and counts that do not grow with the
/// inbox. A queued job that waits behind an
/// earlier one of its chat is marked `waiting` (from its insert, or by the claim that finds it
/// so: the jobs of a file of an earlier version, a retried or replayed job), and the index
/// the claim reads (`periskope_inbox_ready`, in [`due_at`] order) holds only the jobs that are
/// not: each chat's first queued job, and the jobs of no chat. When a chat's queued job is
/// settled or deleted, a trigger unmarks the chat's next one. `periskope_inbox_counts` holds
/// the jobs and attempts of each state, kept by triggers in the transaction of each change:
/// [`InboxStore::stats`] reads it, not the jobs.
const SCHEMA_V5: &str = concat!(
    "
ALTER TABLE periskope_inbox_jobs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
DROP INDEX periskope_inbox_due;
CREATE INDEX periskope_inbox_ready ON periskope_inbox_jobs (",
    due_at!(),
    ", id)
WHERE state IN ('pending', 'running') AND waiting = 0;
CREATE INDEX periskope_inbox_queued ON periskope_inbox_jobs (ordering_key, id)
WHERE state IN ('pending', 'running') AND ordering_key IS NOT NULL;
CREATE INDEX periskope_inbox_leased ON periskope_inbox_jobs (ordering_key, lease_until) WHERE state = 'running';
CREATE TRIGGER periskope_inbox_next_after_settling AFTER UPDATE OF state ON periskope_inbox_jobs
WHEN old.ordering_key IS NOT NULL AND old.state IN ('pending', 'running') AND new.state IN ('done', 'dead')
BEGIN ",
    next_of_chat!(),
    " END;
CREATE TRIGGER periskope_inbox_next_after_deleting AFTER DELETE ON periskope_inbox_jobs
WHEN old.ordering_key IS NOT NULL AND old.state IN ('pending', 'running')
BEGIN ",
    next_of_chat!(),
    " END;
CREATE TABLE periskope_inbox_counts (
    state TEXT PRIMARY KEY,
    jobs INTEGER NOT NULL,
    attempts INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO periskope_inbox_counts SELECT state, count(*), sum(attempts) FROM periskope_inbox_jobs GROUP BY state;
CREATE TRIGGER periskope_inbox_count_inserted AFTER INSERT ON periskope_inbox_jobs BEGIN ",
    count_in!(new),
    " END;
CREATE TRIGGER periskope_inbox_count_changed AFTER UPDATE OF state, attempts ON periskope_inbox_jobs BEGIN ",
    count_out!(old),
    count_in!(new),
    " END;
CREATE TRIGGER periskope_inbox_count_deleted AFTER DELETE ON periskope_inbox_jobs BEGIN ",
    count_out!(old),
    " END;
"
);

/// Version 6, for [`Alert::DeadLetter`](super::Alert::DeadLetter): the claim counter under which
/// each dead letter's death was told. A job is dead and untold while it differs from `claims`
/// (a retried job dies again under a later claim). The dead letters of earlier versions count
/// as told: an upgrade does not tell them all at once.
const SCHEMA_V6: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN alerted_claims INTEGER;
UPDATE periskope_inbox_jobs SET alerted_claims = claims WHERE state = 'dead';
CREATE INDEX periskope_inbox_unalerted ON periskope_inbox_jobs (id)
WHERE state = 'dead' AND alerted_claims IS NOT claims;
";

/// Version 7: the context of the span that accepted each delivery, as a W3C `traceparent`
/// ([`NewDelivery::traceparent`]); none for the jobs stored before.
const SCHEMA_V7: &str = "
ALTER TABLE periskope_inbox_jobs ADD COLUMN traceparent TEXT;
";

/// What takes a file from each version to the next: `MIGRATIONS[v]` upgrades version `v`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] =
    [SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7];

/// How many attempts of each job are kept by default.
const DEFAULT_ATTEMPTS_KEPT: usize = 10;

const SUMMARY_COLUMNS: &str =
    "id, event, dedup_key, state, attempts, last_error, received_at, run_at, lease_until, handled_at";

/// How to open a [`SqliteStore`].
#[derive(Clone, Debug, Default)]
pub struct SqliteOptions {
    max_size: Option<u64>,
    read_only: bool,
    attempts_kept: Option<usize>,
    read_connections: Option<usize>,
}

impl SqliteOptions {
    /// Caps the jobs' data at about `bytes`. Once it holds that much, new deliveries are
    /// refused with [`InboxError::Full`] (the acceptor answers `503 inbox_full`, and Periskope
    /// retries them) until retention purges handled jobs; copies of stored deliveries are still
    /// answered as duplicates. Claims, settles and purges keep working, so the worker drains a
    /// full file: the file may grow past `bytes` by a quarter (at least 64 pages) for them.
    /// Handled jobs are kept for the whole [retention](super::WorkerConfig::retention), full or
    /// not: size the cap for a retention period's deliveries. Default: no cap.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Opens the existing inbox at `path` for reading only, even while a server has it open:
    /// for inspecting a running inbox (`stats`, `list`, `get`, the console's queries). Every
    /// write fails with [`InboxError::ReadOnly`]; nothing is created or migrated, so the file
    /// must exist and have this version's schema. Default: off.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Keeps the last `attempts` attempts of each job (at least 1) for its
    /// [attempt history](super::ConsoleStore::attempts). Default: 10.
    pub fn attempts_kept(mut self, attempts: usize) -> Self {
        self.attempts_kept = Some(attempts.max(1));
        self
    }

    /// Reads with `connections` read-only connections (at least 1), each on a thread of its
    /// own: at most that many reads that change nothing (the console's queries,
    /// [`get`](InboxStore::get), [`list`](InboxStore::list), [`stats`](InboxStore::stats)) run
    /// at once; the others wait for a free connection, in order, never behind the writer's
    /// queue. Each busy connection takes a core: keep one for each core the deliveries can
    /// spare. Default: 1.
    pub fn read_connections(mut self, connections: usize) -> Self {
        self.read_connections = Some(connections.max(1));
        self
    }

    /// Opens (creating or migrating) the inbox at `path`.
    ///
    /// Fails with [`InboxError::Locked`] when another process has it open for writing, and with
    /// [`InboxError::Open`] when the file is not an inbox (corrupt, or another kind of file).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<SqliteStore, InboxError> {
        let path = path.as_ref().to_path_buf();
        let (connection, writer_lock, max_pages) = if self.read_only {
            (open_reader(&path)?, None, None)
        } else {
            wait_for_closing_writers(&path);
            let writer_lock = lock_for_writing(&path)?;
            let (connection, max_pages) = open_connection(&path, self)?;
            (connection, Some(writer_lock), max_pages)
        };
        // Opened once the writer has created or migrated the file, which they need as it is.
        let readers = (0..self.read_connections.unwrap_or(DEFAULT_READ_CONNECTIONS))
            .map(|_| open_reader(&path))
            .collect::<Result<Vec<_>, _>>()?;
        let (read_sender, read_queue) = mpsc::channel();
        let read_queue = Arc::new(Mutex::new(read_queue));
        let reader_threads = readers
            .into_iter()
            .map(|reader| {
                let queue = Arc::clone(&read_queue);
                std::thread::Builder::new()
                    .name("periskope-inbox-sqlite-reader".to_owned())
                    .spawn(move || run_reader(&reader, &queue))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| open_error(&path, error))?;
        let (wake, checkpointer) = if self.read_only {
            (None, None)
        } else {
            let checkpointing = open_checkpointer(&path)?;
            let (wake, woken) = mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name("periskope-inbox-sqlite-checkpointer".to_owned())
                .spawn(move || run_checkpointer(&checkpointing, &woken))
                .map_err(|error| open_error(&path, error))?;
            (Some(wake), Some(thread))
        };
        let read_only = self.read_only;
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("periskope-inbox-sqlite".to_owned())
            .spawn(move || {
                let mut checkpoints = Checkpoints { at: 0, wake };
                run_writer(&connection, receiver, read_only, &mut checkpoints);
                // The checkpointer and the readers have stopped (their queues close first)
                // before the writer's connection, the last one, closes the file and checkpoints
                // it; the lock that keeps other writers out goes last.
                drop(checkpoints);
                if let Some(checkpointer) = checkpointer {
                    let _ = checkpointer.join();
                }
                for reader in reader_threads {
                    let _ = reader.join();
                }
                drop(connection);
                drop(writer_lock);
            })
            .map_err(|error| open_error(&path, error))?;
        Ok(SqliteStore {
            shared: Arc::new(Shared {
                sender: Mutex::new(Some(sender)),
                readers: Mutex::new(Some(read_sender)),
                thread: Mutex::new(Some(thread)),
                path,
                max_pages,
                attempts_kept: self.attempts_kept.unwrap_or(DEFAULT_ATTEMPTS_KEPT),
            }),
        })
    }
}

/// The embedded inbox: a SQLite file (WAL, `synchronous=FULL`) written by one process.
///
/// Every clone shares one writer thread, which runs every write, and read-only connections for
/// the reads that change nothing: the [console's queries](super::ConsoleStore),
/// [`get`](InboxStore::get), [`list`](InboxStore::list) and [`stats`](InboxStore::stats). Those
/// read the last commit beside the writer (WAL) and never wait for its queue; at most
/// [`read_connections`](SqliteOptions::read_connections) of them (1 by default) run at once,
/// the others wait for a free connection. A read whose caller stopped waiting (its future was
/// dropped) before a connection took it is not run; one already running finishes, and its
/// connection takes the next. A write over every job a filter or a state selects (a bulk retry
/// or purge, retention) runs in a transaction of its own, after the deliveries queued before it
/// are committed; it holds the writer, and the deliveries queued behind it, for as long as it
/// runs: the fewer jobs each touches, the sooner they are answered.
///
/// The file is closed when the last clone is dropped: before the drop returns outside a tokio
/// runtime; inside one (where waiting would block the runtime), by the writer thread itself
/// once it has answered what was queued, and opening the same file again in this process waits
/// for that. A second process opening the same file for writing gets [`InboxError::Locked`];
/// it may open it [read-only](SqliteOptions::read_only) while the first runs. When the store
/// opens, the jobs a previous process left running (it crashed or was killed) are due again at
/// once: the attempt they were on stays counted.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sender: Mutex<Option<Sender<Operation>>>,
    /// The queue of the read-only connections.
    readers: Mutex<Option<Sender<Read>>>,
    /// The writer thread, which stops the readers' threads before it closes the file.
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// New deliveries are refused once the jobs fill this many pages ([`SqliteOptions::max_size`]).
    max_pages: Option<i64>,
    /// How many attempts of each job the history keeps ([`SqliteOptions::attempts_kept`]).
    attempts_kept: usize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queues ends the threads once they have answered what is queued; the
        // writer's waits for the readers'.
        drop(self.readers.lock().map(|mut readers| readers.take()));
        drop(self.sender.lock().map(|mut sender| sender.take()));
        let Some(thread) = self.thread.lock().ok().and_then(|mut thread| thread.take()) else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Waiting here would block a runtime thread until the queued fsyncs finish: the
            // thread closes the file by itself, and opening the same file waits for it.
            CLOSING.lock().unwrap_or_else(PoisonError::into_inner).push((file_identity(&self.path), thread));
        } else {
            // Outside a runtime, the file is released before the drop returns.
            let _ = thread.join();
        }
    }
}

/// Writer threads of dropped stores that are still finishing their queue, with their file.
static CLOSING: Mutex<Vec<(PathBuf, JoinHandle<()>)>> = Mutex::new(Vec::new());

/// The file's canonical path when it exists, so that two spellings of one file match.
fn file_identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Waits for the writer threads still closing `path` (a store of this process dropped inside a
/// runtime), so that opening it again does not find it locked; forgets the finished others.
fn wait_for_closing_writers(path: &Path) {
    let file = file_identity(path);
    let closing: Vec<JoinHandle<()>> = {
        let mut closing = CLOSING.lock().unwrap_or_else(PoisonError::into_inner);
        let (this_file, others): (Vec<_>, Vec<_>) = closing.drain(..).partition(|(path, _)| *path == file);
        *closing = others;
        closing.retain(|(_, thread)| !thread.is_finished());
        this_file.into_iter().map(|(_, thread)| thread).collect()
    };
    for thread in closing {
        let _ = thread.join();
    }
}

/// An operation queued for the writer thread.
struct Operation {
    run: Write,
    batching: Batching,
}

/// An operation's work, run inside the batch's transaction (`None` when it already failed:
/// nothing is run); it returns how to answer its caller once the transaction's fate is known.
type Write = Box<dyn FnOnce(Option<&Connection>) -> Answer + Send>;

/// Whether an operation shares its transaction with the others queued beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batching {
    /// One job, or a few: it joins the group commit.
    Shared,
    /// Every job a filter or a state selects, however many: its transaction holds it alone, so
    /// the deliveries queued before it are committed (and answered) first, without waiting for
    /// it.
    Alone,
}

/// A read run on one of the read-only connections; it answers its caller itself.
type Read = Box<dyn FnOnce(&Connection) + Send>;

/// Answers the caller: with `None` when the transaction committed, or with why it did not.
type Answer = Box<dyn FnOnce(Option<&InboxError>) + Send>;

impl SqliteStore {
    /// Opens (creating or migrating) the inbox at `path` with default [`SqliteOptions`].
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, InboxError> {
        SqliteOptions::default().open(path)
    }

    /// Options for [`SqliteOptions::open`].
    pub fn options() -> SqliteOptions {
        SqliteOptions::default()
    }

    /// The file this store keeps its jobs in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `operation` on the writer thread, in a transaction (shared with the operations
    /// queued beside it) that is committed before the answer arrives.
    fn call<T, F>(&self, operation: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.queue(Batching::Shared, operation)
    }

    /// Runs `operation`, which may touch any number of jobs, on the writer thread, in a
    /// transaction of its own.
    fn call_alone<T, F>(&self, operation: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.queue(Batching::Alone, operation)
    }

    /// Runs `read`, which changes nothing, on a read-only connection, in one read transaction
    /// (one snapshot of the last commit).
    fn read<T, F>(&self, read: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let read: Read = Box::new(move |connection: &Connection| {
            // Nobody waits for it any more: the connection goes on to the next read.
            if sender.is_closed() {
                return;
            }
            let _ = sender.send(in_read_transaction(connection, read));
        });
        let queued = self.shared.readers.lock().ok().and_then(|queue| queue.as_ref()?.send(read).ok());
        Pending { receiver: queued.map(|()| receiver) }
    }

    /// Queues `operation` for the writer thread, sharing a transaction or not as `batching`
    /// says.
    fn queue<T, F>(&self, batching: Batching, operation: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let run = Box::new(move |connection: Option<&Connection>| -> Answer {
            let result = match connection {
                // Its caller gave up (a timeout, a dropped future) before the writer reached it:
                // an operation not yet started has no effect.
                _ if sender.is_closed() => {
                    Err(InboxError::Storage("its caller gave up before it started".to_owned()))
                }
                Some(connection) => in_savepoint(connection, operation),
                None => Err(InboxError::Storage("the transaction failed before this write".to_owned())),
            };
            Box::new(move |failed: Option<&InboxError>| {
                let _ = sender.send(match failed {
                    Some(error) => Err(error.clone()),
                    None => result,
                });
            })
        });
        let operation = Operation { run, batching };
        let queued = self.shared.sender.lock().ok().and_then(|queue| queue.as_ref()?.send(operation).ok());
        Pending { receiver: queued.map(|()| receiver) }
    }
}

impl SqliteStore {
    /// Runs `delete` (parameters: a time, a limit) in the writer's shared transaction, beside
    /// the deliveries queued with it. Each statement names the index of its time: without
    /// statistics, SQLite picks `(state, id)` and reads every handled job, the ones to keep
    /// included, in each call (a quarter of a second on 300,000).
    fn delete_at_most(
        &self,
        delete: &'static str,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let (before, limit) = (to_millis(before), i64::try_from(limit).unwrap_or(i64::MAX));
        self.call(move |connection| {
            Ok(connection.prepare_cached(delete)?.execute(params![before, limit])? as u64)
        })
    }
}

/// The answer of an operation queued for the writer thread or a read connection.
#[derive(Debug)]
pub struct Pending<T> {
    receiver: Option<oneshot::Receiver<Result<T, InboxError>>>,
}

impl<T> Future for Pending<T> {
    type Output = Result<T, InboxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Poll::Ready(Err(InboxError::Closed));
        };
        Pin::new(receiver).poll(cx).map(|answer| answer.unwrap_or(Err(InboxError::Closed)))
    }
}

fn open_error(path: &Path, reason: impl ToString) -> InboxError {
    InboxError::Open { location: path.display().to_string(), reason: reason.to_string() }
}

fn storage_error(error: rusqlite::Error) -> InboxError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => InboxError::Full,
        Some(ErrorCode::ReadOnly) => InboxError::ReadOnly,
        _ => InboxError::Storage(error.to_string()),
    }
}

/// The error of an insert into a file at its [`SqliteOptions::max_size`]: SQLite's own "full".
fn full() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None)
}

/// The pages that hold data: the file's pages less the free ones.
fn used_pages(connection: &Connection) -> rusqlite::Result<i64> {
    let pages: i64 = connection.prepare_cached("PRAGMA page_count")?.query_row([], |row| row.get(0))?;
    let free: i64 = connection.prepare_cached("PRAGMA freelist_count")?.query_row([], |row| row.get(0))?;
    Ok(pages - free)
}

/// The headroom a full file keeps for claims, settles and purges: a quarter of the cap, at
/// least this many pages.
const MIN_HEADROOM_PAGES: i64 = 64;

/// The file holds message bodies and phone numbers: a new one is created readable and writable
/// by its owner only, before SQLite opens it; SQLite gives the WAL the mode of the file.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), InboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(open_error(path, error)),
    }
}

/// Keeps other processes from opening `path` for writing, until the returned file is closed
/// (a killed process's lock goes with it). The lock is on a file of its own next to the inbox
/// (`inbox.db-lock`), so that SQLite's own locks stay free for readers.
fn lock_for_writing(path: &Path) -> Result<std::fs::File, InboxError> {
    // A directory can never be the inbox: refused before a lock file is left beside it.
    if path.is_dir() {
        return Err(open_error(path, "it is a directory"));
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-lock");
    let lock_path = PathBuf::from(lock_path);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&lock_path).map_err(|error| open_error(path, error))?;
    // A lock just released may still be held for a moment by a copy of its descriptor: a
    // process this one was starting (fork, then exec) when the store was dropped holds one
    // until its exec closes it. A running server holds the lock for good: it is reported
    // after a short wait.
    let give_up = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(InboxError::Locked { location: path.display().to_string() });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(open_error(path, error)),
        }
    }
}

/// How long opening a file whose writer lock is held waits for it before saying the file is
/// in use.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// A read-only connection to an existing inbox of this version's schema.
fn open_reader(path: &Path) -> Result<Connection, InboxError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(path, error))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| open_error(path, error))?;
    connection.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|error| open_error(path, error))?;
    match version {
        SCHEMA_VERSION => Ok(connection),
        newer if newer > SCHEMA_VERSION => {
            Err(InboxError::NewerSchema { found: newer, supported: SCHEMA_VERSION })
        }
        older => Err(open_error(
            path,
            format!(
                "its schema is version {older}, older than this version's {SCHEMA_VERSION}: open it for \
                 writing once (start the server) to upgrade it"
            ),
        )),
    }
}

/// The checkpointer's connection: it writes only the file's pages that the WAL already holds.
fn open_checkpointer(path: &Path) -> Result<Connection, InboxError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(path, error))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| open_error(path, error))?;
    // FULL: the file is synced before the checkpoint marks its pages copied.
    connection.pragma_update(None, "synchronous", "FULL").map_err(|error| open_error(path, error))?;
    Ok(connection)
}

/// How long a connection waits for another's short-lived lock (a reader's checkpoint, the
/// writer's commit) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection, and the pages past which new deliveries are refused.
fn open_connection(path: &Path, options: &SqliteOptions) -> Result<(Connection, Option<i64>), InboxError> {
    #[cfg(unix)]
    create_private(path)?;
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(path, error))?;
    let classify = |error: rusqlite::Error| match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            InboxError::Locked { location: path.display().to_string() }
        }
        _ => open_error(path, error),
    };
    // Only this process writes (the lock file says so), but readers in other processes take
    // SQLite's locks for moments.
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| open_error(path, error))?;
    let journal: String =
        connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(classify)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(open_error(path, format!("cannot switch to WAL (journal mode {journal})")));
    }
    // FULL: a commit is synced to disk, WAL included, before it returns; the 200 waits for it.
    connection.pragma_update(None, "synchronous", "FULL").map_err(classify)?;
    // The writer runs some thirty statements (deliveries, claims, settlements, the console's
    // actions); rusqlite caches 16 by default, and a statement pushed out is parsed again.
    connection.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
    // Each operation of a batch runs in a savepoint of its own, and a savepoint keeps the
    // pages it changes in a sub-journal: in memory, not in a temporary file written (never
    // synced) at every operation.
    connection.pragma_update(None, "temp_store", "MEMORY").map_err(classify)?;
    migrate(&connection).map_err(|error| match error {
        Migration::Sqlite(error) => classify(error),
        Migration::Newer(found) => InboxError::NewerSchema { found, supported: SCHEMA_VERSION },
    })?;
    // Replaces SQLite's automatic checkpoint: the checkpointer thread checkpoints beside the writer.
    connection.wal_hook(Some(note_wal_pages));
    let max_pages = match options.max_size {
        None => None,
        Some(bytes) => {
            let page_size: i64 =
                connection.query_row("PRAGMA page_size", [], |row| row.get(0)).map_err(classify)?;
            let pages: i64 =
                connection.query_row("PRAGMA page_count", [], |row| row.get(0)).map_err(classify)?;
            let max_pages =
                i64::try_from(bytes / page_size.max(512).unsigned_abs()).unwrap_or(i64::MAX).max(1);
            // Inserts stop at `max_pages`; the hard cap leaves room past it (and past a file
            // already larger) for the worker to drain the file.
            let headroom = (max_pages / 4).max(MIN_HEADROOM_PAGES);
            let hard_cap = max_pages.max(pages).saturating_add(headroom);
            connection
                .query_row(&format!("PRAGMA max_page_count = {hard_cap}"), [], |_| Ok(()))
                .map_err(classify)?;
            Some(max_pages)
        }
    };
    Ok((connection, max_pages))
}

enum Migration {
    Sqlite(rusqlite::Error),
    Newer(i64),
}

impl From<rusqlite::Error> for Migration {
    fn from(error: rusqlite::Error) -> Self {
        Migration::Sqlite(error)
    }
}

/// Creates or upgrades the schema, takes the file's lock with a write, and makes the jobs a
/// dead process left running due again.
fn migrate(connection: &Connection) -> Result<(), Migration> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        match usize::try_from(version).ok().and_then(|version| MIGRATIONS.get(version..)) {
            Some([]) => {}
            Some(upgrades) => {
                for upgrade in upgrades {
                    connection.execute_batch(upgrade)?;
                }
                connection.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            }
            None => return Err(Migration::Newer(version)),
        }
        let now = to_millis(SystemTime::now());
        connection.execute(
            "INSERT INTO periskope_inbox_owner (id, opened_at) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET opened_at = excluded.opened_at",
            [now],
        )?;
        connection.execute(
            "UPDATE periskope_inbox_jobs SET state = 'pending', run_at = ?1, lease_until = NULL, waiting = 0
             WHERE state = 'running'",
            [now],
        )?;
        connection.execute(
            "UPDATE periskope_inbox_attempts SET outcome = 'abandoned', ended_at = ?1 WHERE outcome = 'running'",
            [now],
        )?;
        Ok(())
    })();
    match result {
        Ok(()) => connection.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = connection.execute_batch("ROLLBACK");
        }
    }
    result
}

thread_local! {
    /// How many pages the WAL holds after this thread's last commit (the writer's).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// SQLite's WAL hook on the writer's connection, called on its thread after each commit.
fn note_wal_pages(_wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// When the writer wakes the checkpointer.
struct Checkpoints {
    /// How many pages the WAL held at the last wake-up.
    at: c_int,
    /// The checkpointer's wake-up: one pending at most, as one checkpoint copies whatever the
    /// WAL holds when it starts.
    wake: Option<SyncSender<()>>,
}

impl Checkpoints {
    /// After a batch was committed and answered: wakes the checkpointer once the batches since
    /// the last wake-up appended [`CHECKPOINT_PAGES`].
    fn after_batch(&mut self) {
        let Some(wake) = &self.wake else { return };
        let pages = WAL_PAGES.get();
        if pages < self.at {
            // The WAL was written over from its start.
            self.at = 0;
        }
        if pages - self.at < CHECKPOINT_PAGES {
            return;
        }
        self.at = pages;
        // Full: a checkpoint is already due, and it copies these pages too.
        let _ = wake.try_send(());
    }
}

/// The checkpointer thread: a PASSIVE checkpoint each time the writer wakes it, until the
/// writer stops. PASSIVE waits for nobody, and the writer goes on appending meanwhile: it
/// copies the pages no reader still needs, and a later one copies the rest. Once it has copied
/// the whole WAL, the writer's next commit writes it over from its start.
fn run_checkpointer(connection: &Connection, wake: &Receiver<()>) {
    while wake.recv().is_ok() {
        if let Err(_error) = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            #[cfg(feature = "tracing")]
            tracing::warn!(error = %_error, "periskope inbox checkpoint failed; the next one tries again");
        }
    }
}

/// The writer thread: group commit of whatever is queued, an operation that runs
/// [alone](Batching::Alone) in a transaction of its own; the checkpointer woken when the WAL
/// has grown enough.
fn run_writer(
    connection: &Connection,
    queue: Receiver<Operation>,
    read_only: bool,
    checkpoints: &mut Checkpoints,
) {
    let mut batch: Vec<Operation> = Vec::with_capacity(MAX_BATCH);
    // An operation to run alone, taken from the queue while a batch was gathered: it comes next.
    let mut held: Option<Operation> = None;
    loop {
        let Some(first) = held.take().or_else(|| queue.recv().ok()) else { break };
        let alone = first.batching == Batching::Alone;
        batch.push(first);
        while !alone && batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(operation) if operation.batching == Batching::Alone => {
                    held = Some(operation);
                    break;
                }
                Ok(operation) => batch.push(operation),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        run_batch(connection, batch.drain(..), read_only);
        checkpoints.after_batch();
    }
}

/// A reader thread: one read at a time on its own read-only connection, taken from the queue
/// the readers share, until the store is dropped.
fn run_reader(connection: &Connection, queue: &Mutex<Receiver<Read>>) {
    loop {
        // The lock is held while waiting, so that one idle reader waits on the queue and the
        // others on the lock; it is released before the read runs.
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(read) = next else { break };
        read(connection);
    }
}

/// Runs `read` in one read transaction: every query it makes sees the same commit. A panic is
/// that read's error only: the reader goes on serving the others.
fn in_read_transaction<T>(
    connection: &Connection,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, InboxError> {
    connection.execute_batch("BEGIN").map_err(storage_error)?;
    let result = match panic::catch_unwind(AssertUnwindSafe(|| read(connection))) {
        Ok(result) => result.map_err(storage_error),
        Err(_) => Err(InboxError::Storage("the store read panicked".to_owned())),
    };
    // The transaction wrote nothing: ending it only releases its snapshot, so that checkpoints
    // can move past it.
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    result
}

fn run_batch(connection: &Connection, batch: impl Iterator<Item = Operation>, read_only: bool) {
    let mut answers: Vec<Answer> = Vec::with_capacity(MAX_BATCH);
    // A writer takes the write lock at once; a reader reads one snapshot.
    let begin = if read_only { "BEGIN" } else { "BEGIN IMMEDIATE" };
    let mut failure = connection.execute_batch(begin).err().map(storage_error);
    for operation in batch {
        // Once the transaction is gone, nothing more runs; every caller gets the error.
        answers.push((operation.run)(failure.is_none().then_some(connection)));
        if failure.is_none() && connection.is_autocommit() {
            // A failure serious enough (disk full, I/O) made SQLite roll the whole transaction
            // back: every operation before this one is undone too.
            failure = Some(InboxError::Storage("the transaction was rolled back".to_owned()));
        }
    }
    if failure.is_none()
        && let Err(error) = connection.execute_batch("COMMIT")
    {
        failure = Some(storage_error(error));
    }
    if failure.is_some() && !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    for answer in answers {
        answer(failure.as_ref());
    }
}

/// Runs `operation` in a savepoint: on error, or when it panics, its effects are undone and the
/// rest of the batch is kept. A panic is that operation's error only: the thread goes on
/// serving every other caller.
fn in_savepoint<T>(
    connection: &Connection,
    operation: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, InboxError> {
    // Prepared once: a statement parsed at each operation costs the writer more than the
    // savepoint itself.
    connection
        .prepare_cached("SAVEPOINT operation")
        .and_then(|mut savepoint| savepoint.execute([]))
        .map_err(storage_error)?;
    let result = match panic::catch_unwind(AssertUnwindSafe(|| operation(connection))) {
        Ok(result) => result.map_err(storage_error),
        Err(_) => Err(InboxError::Storage("the store operation panicked".to_owned())),
    };
    if result.is_err() && !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK TO operation");
    }
    if !connection.is_autocommit() {
        connection
            .prepare_cached("RELEASE operation")
            .and_then(|mut release| release.execute([]))
            .map_err(storage_error)?;
    }
    result
}

impl InboxStore for SqliteStore {
    type InsertFuture = Pending<Stored>;

    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture {
        let max_pages = self.shared.max_pages;
        self.call(move |connection| {
            if let Some(max_pages) = max_pages
                && used_pages(connection)? >= max_pages
            {
                // Full: a copy of a stored delivery is still a duplicate; anything new is
                // refused.
                let stored: bool = connection
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM periskope_inbox_jobs WHERE dedup_key = ?1)",
                    )?
                    .query_row([&delivery.key], |row| row.get(0))?;
                return if stored { Ok(Stored::Duplicate) } else { Err(full()) };
            }
            let received_at = to_millis(delivery.received_at);
            let inserted = connection
                .prepare_cached(
                    // A job of a chat with a queued job waits behind it from the start, out of
                    // the claim's index.
                    "INSERT INTO periskope_inbox_jobs
                         (dedup_key, event, ordering_key, body, signing_key, received_at, run_at, path, traceparent, waiting)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, EXISTS (
                         SELECT 1 FROM periskope_inbox_jobs WHERE ordering_key = ?3 AND state IN ('pending', 'running')))
                     ON CONFLICT (dedup_key) DO NOTHING",
                )?
                .execute(params![
                    delivery.key,
                    delivery.event,
                    delivery.ordering_key,
                    &delivery.body[..],
                    delivery.signing_key,
                    received_at,
                    delivery.path,
                    delivery.traceparent,
                ])?;
            Ok(if inserted == 0 { Stored::Duplicate } else { Stored::New })
        })
    }

    fn claim(
        &self,
        request: ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, InboxError>> + Send {
        let attempts_kept = self.shared.attempts_kept;
        self.call(move |connection| {
            let now = to_millis(request.now);
            let lease_until = to_millis(saturating_add(request.now, request.lease));
            let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
            // The writer thread is the only one that claims, so each check below is exact:
            // nothing can change a chat between it and the update that follows. The index is
            // named: without statistics, SQLite's planner prefers `(state, id)` and a sort.
            let due: Vec<(JobId, u32, String, Option<String>, bool)> = connection
                .prepare_cached(concat!(
                    "SELECT id, attempts, event, ordering_key, state = 'running' FROM periskope_inbox_jobs
                     INDEXED BY periskope_inbox_ready
                     WHERE state IN ('pending', 'running') AND waiting = 0 AND ",
                    due_at!(),
                    " <= ?1 ORDER BY ",
                    due_at!(),
                    ", id LIMIT ?2"
                ))?
                .query_map(params![now, limit.saturating_add(MAX_MARKED_PER_CLAIM)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut runnable = Vec::new();
            for (id, attempts, event, ordering_key, running) in due {
                if runnable.len() as i64 == limit {
                    break;
                }
                if let Some(chat) = &ordering_key
                    && !first_in_chat_and_free(connection, id, chat, now)?
                {
                    continue;
                }
                runnable.push((id, attempts, event, ordering_key, running));
            }
            let due = runnable;
            let mut claimed = Vec::with_capacity(due.len());
            for (id, attempts, event, ordering_key, running) in due {
                // A due job that is still running lost its lease: that attempt was abandoned.
                if running {
                    end_attempt(connection, id, AttemptOutcome::Abandoned, now, None)?;
                }
                if attempts >= request.max_attempts {
                    connection.prepare_cached(
                        "UPDATE periskope_inbox_jobs SET state = 'dead', lease_until = NULL, dead_at = ?3,
                             last_error = coalesce(last_error || '; ', '') || ?2
                         WHERE id = ?1",
                    )?
                    .execute(params![id, LEASE_EXPIRED, now])?;
                    super::log_dead_letter(&event, id, attempts);
                    continue;
                }
                let job = connection
                    .prepare_cached(
                        "UPDATE periskope_inbox_jobs
                         SET state = 'running', attempts = attempts + 1, claims = claims + 1, lease_until = ?2
                         WHERE id = ?1
                         RETURNING id, attempts, event, dedup_key, body, signing_key, received_at, path, claims, traceparent",
                    )?
                    .query_row(params![id, lease_until], claimed_job)?;
                open_attempt(connection, &job, now, attempts_kept)?;
                claimed.push(job);
                if let Some(chat) = ordering_key.filter(|_| attempts == 0) {
                    claim_run(connection, &request, id, &chat, lease_until, attempts_kept, &mut claimed)?;
                }
            }
            Ok(claimed)
        })
    }

    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.call(move |connection| {
            let settled = connection
                .prepare_cached(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'done', handled_at = ?3, lease_until = NULL, waiting = 0, attempts = ?4
                     WHERE id = ?1 AND claims = ?2 AND state = 'running'",
                )?
                .execute(params![lease.id, lease.stored_token(), to_millis(now), lease.attempt])?;
            if settled == 1 {
                end_attempt(connection, lease.id, AttemptOutcome::Handled, to_millis(now), None)?;
            }
            Ok(())
        })
    }

    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        let error = bounded_error(error, MAX_ERROR_LEN);
        let ended_at = to_millis(SystemTime::now());
        let dead_at = retry_at.is_none().then_some(ended_at);
        self.call(move |connection| {
            let (state, run_at) = match retry_at {
                Some(at) => (JobState::Pending, Some(to_millis(at))),
                None => (JobState::Dead, None),
            };
            let settled = connection
                .prepare_cached(
                    "UPDATE periskope_inbox_jobs
                     SET state = ?3, run_at = coalesce(?4, run_at), last_error = ?5, lease_until = NULL,
                         dead_at = ?6, waiting = 0, attempts = ?7
                     WHERE id = ?1 AND claims = ?2 AND state = 'running'",
                )?
                .execute(params![
                    lease.id,
                    lease.stored_token(),
                    state.as_str(),
                    run_at,
                    error,
                    dead_at,
                    lease.attempt
                ])?;
            if settled == 1 {
                end_attempt(connection, lease.id, AttemptOutcome::Failed, ended_at, Some(&error))?;
            }
            Ok(())
        })
    }

    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.call(move |connection| {
            let settled = connection
                .prepare_cached(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'pending', attempts = ?4, run_at = ?3, lease_until = NULL, waiting = 0
                     WHERE id = ?1 AND claims = ?2 AND state = 'running'",
                )?
                .execute(params![
                    lease.id,
                    lease.stored_token(),
                    to_millis(now),
                    lease.attempt.saturating_sub(1)
                ])?;
            if settled == 1 {
                end_attempt(connection, lease.id, AttemptOutcome::Released, to_millis(now), None)?;
            }
            Ok(())
        })
    }

    fn renew(
        &self,
        lease: Lease,
        until: SystemTime,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.call(move |connection| {
            let renewed = connection
                .prepare_cached(
                    "UPDATE periskope_inbox_jobs SET lease_until = ?3, waiting = 0
                     WHERE id = ?1 AND claims = ?2 AND state = 'running'",
                )?
                .execute(params![lease.id, lease.stored_token(), to_millis(until)])?;
            Ok(renewed == 1)
        })
    }

    fn holds(&self, lease: Lease) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.call(move |connection| {
            connection
                .prepare_cached(
                    "SELECT 1 FROM periskope_inbox_jobs WHERE id = ?1 AND claims = ?2 AND state = 'running'",
                )?
                .exists(params![lease.id, lease.stored_token()])
        })
    }

    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        self.read(move |connection| {
            let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
            connection
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM periskope_inbox_jobs
                     WHERE (?1 IS NULL OR state = ?1) AND id > ?2 ORDER BY id LIMIT ?3"
                ))?
                .query_map(
                    params![query.state.map(JobState::as_str), query.after.unwrap_or(0), limit],
                    job_summary,
                )?
                .collect()
        })
    }

    fn get(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, InboxError>> + Send {
        self.read(move |connection| {
            connection
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS}, body, signing_key, ordering_key, path FROM periskope_inbox_jobs
                     WHERE id = ?1"
                ))?
                .query_row([id], |row| {
                    Ok(JobRecord {
                        summary: job_summary(row)?,
                        body: Bytes::from(row.get::<_, Vec<u8>>(10)?),
                        signing_key: row.get(11)?,
                        ordering_key: row.get(12)?,
                        path: row.get(13)?,
                    })
                })
                .optional()
        })
    }

    fn retry(
        &self,
        selection: Selection,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.queue(batching(selection), move |connection| {
            let (id, state) = selection_params(selection);
            let changed = connection
                .prepare_cached(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'pending', attempts = 0, run_at = ?3, lease_until = NULL, dead_at = NULL, waiting = 0
                     WHERE state IN ('pending', 'dead') AND (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR state = ?2)",
                )?
                .execute(params![id, state, to_millis(now)])?;
            Ok(changed as u64)
        })
    }

    fn purge(&self, selection: Selection) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.queue(batching(selection), move |connection| {
            let (id, state) = selection_params(selection);
            let deleted = connection
                .prepare_cached(
                    "DELETE FROM periskope_inbox_jobs WHERE (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR state = ?2)",
                )?
                .execute(params![id, state])?;
            Ok(deleted as u64)
        })
    }

    fn purge_handled(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.delete_at_most(
            "DELETE FROM periskope_inbox_jobs WHERE id IN (
                 SELECT id FROM periskope_inbox_jobs INDEXED BY periskope_inbox_handled
                 WHERE state = 'done' AND handled_at < ?1 LIMIT ?2)",
            before,
            limit,
        )
    }

    fn purge_dead(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.delete_at_most(
            "DELETE FROM periskope_inbox_jobs WHERE id IN (
                 SELECT id FROM periskope_inbox_jobs INDEXED BY periskope_inbox_dead
                 WHERE state = 'dead' AND dead_at < ?1 LIMIT ?2)",
            before,
            limit,
        )
    }

    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send {
        self.read(move |connection| {
            let mut stats = InboxStats::default();
            let mut statement =
                connection.prepare_cached("SELECT state, jobs, attempts FROM periskope_inbox_counts")?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let jobs = row.get::<_, i64>(1)?.unsigned_abs();
                let attempts = row.get::<_, i64>(2)?.unsigned_abs();
                match JobState::from_name(&row.get::<_, String>(0)?) {
                    Some(JobState::Pending) => {
                        stats.pending = jobs;
                        stats.attempts_in_queue += attempts;
                    }
                    Some(JobState::Running) => {
                        stats.running = jobs;
                        stats.attempts_in_queue += attempts;
                    }
                    Some(JobState::Done) => stats.done = jobs,
                    Some(JobState::Dead) => stats.dead = jobs,
                    None => {}
                }
            }
            // The first queued job by id is the one received first (ids follow arrival): read
            // on the `(state, id)` index, however many are queued.
            let oldest: Option<i64> = connection
                .prepare_cached(
                    "SELECT min(received_at) FROM (
                         SELECT (SELECT received_at FROM periskope_inbox_jobs WHERE state = 'pending' ORDER BY id LIMIT 1)
                             AS received_at
                         UNION ALL
                         SELECT (SELECT received_at FROM periskope_inbox_jobs WHERE state = 'running' ORDER BY id LIMIT 1))",
                )?
                .query_row([], |row| row.get(0))?;
            stats.oldest_pending_age =
                oldest.map(|received| now.duration_since(from_millis(received)).unwrap_or(Duration::ZERO));
            Ok(stats)
        })
    }

    fn unalerted_dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<UnalertedDeadLetter>, InboxError>> + Send {
        self.read(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, claims, event, attempts, last_error FROM periskope_inbox_jobs
                 WHERE state = 'dead' AND alerted_claims IS NOT claims ORDER BY id LIMIT ?1",
            )?;
            let rows = statement.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok(UnalertedDeadLetter::new(
                    row.get(0)?,
                    row.get::<_, i64>(1)?.unsigned_abs(),
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?;
            rows.collect()
        })
    }

    fn mark_alerted(
        &self,
        job: JobId,
        fencing_token: u64,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        let token = i64::try_from(fencing_token).unwrap_or(i64::MAX);
        self.call(move |connection| {
            connection
                .prepare_cached("UPDATE periskope_inbox_jobs SET alerted_claims = ?2 WHERE id = ?1")?
                .execute(params![job, token])?;
            Ok(())
        })
    }
}

/// One job shares the group commit; every job of a state runs alone.
fn batching(selection: Selection) -> Batching {
    match selection {
        Selection::Job(_) => Batching::Shared,
        Selection::State(_) => Batching::Alone,
    }
}

/// Whether job `id`, due, may run now: it is the first queued job of its chat, and no other
/// job of the chat runs under a live lease. A job that may not is marked waiting, out of the
/// claim's index: behind an earlier job (which is unmarked in turn, so that each chat keeps its
/// first queued job in the index), or behind a running one (a retried or replayed job), whose
/// settlement, or whose lease's expiry, brings the chat back.
fn first_in_chat_and_free(
    connection: &Connection,
    id: JobId,
    chat: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let first: JobId = connection
        .prepare_cached(
            "SELECT id FROM periskope_inbox_jobs
             WHERE ordering_key = ?1 AND state IN ('pending', 'running') ORDER BY id LIMIT 1",
        )?
        .query_row([chat], |row| row.get(0))?;
    let held = first == id
        && connection
            .prepare_cached(
                "SELECT 1 FROM periskope_inbox_jobs
                 WHERE ordering_key = ?1 AND state = 'running' AND lease_until > ?2 AND id <> ?3",
            )?
            .exists(params![chat, now, id])?;
    if first == id && !held {
        return Ok(true);
    }
    connection.prepare_cached("UPDATE periskope_inbox_jobs SET waiting = 1 WHERE id = ?1")?.execute([id])?;
    if first != id {
        connection
            .prepare_cached("UPDATE periskope_inbox_jobs SET waiting = 0 WHERE id = ?1 AND waiting = 1")?
            .execute([first])?;
    }
    Ok(false)
}

/// Claims the jobs that follow `first` in its chat's run ([`ClaimRequest::run`]): the chat's
/// next queued jobs, while each is due and was never attempted. They stay marked waiting, out
/// of the claim's index, behind the job before them; their attempts are counted when they are
/// settled.
fn claim_run(
    connection: &Connection,
    request: &ClaimRequest,
    first: JobId,
    chat: &str,
    lease_until: i64,
    attempts_kept: usize,
    claimed: &mut Vec<ClaimedJob>,
) -> rusqlite::Result<()> {
    let now = to_millis(request.now);
    let next: Vec<(JobId, bool, usize, bool)> = connection
        .prepare_cached(concat!(
            "SELECT id, attempts = 0 AND attempts < ?4 AND ",
            due_at!(),
            " <= ?3, length(body), state = 'running' FROM periskope_inbox_jobs INDEXED BY periskope_inbox_queued
             WHERE ordering_key = ?1 AND id > ?2 AND state IN ('pending', 'running') ORDER BY id LIMIT ?5"
        ))?
        .query_map(
            params![
                chat,
                first,
                now,
                request.max_attempts,
                i64::try_from(request.run.saturating_sub(1)).unwrap_or(i64::MAX)
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut follows = first;
    let mut bytes = 0;
    for (id, may_follow, length, running) in next {
        bytes += length;
        if !may_follow || bytes > MAX_RUN_BYTES {
            break;
        }
        // A follower that was running under a lease that expired was abandoned with its run.
        if running {
            end_attempt(connection, id, AttemptOutcome::Abandoned, now, None)?;
        }
        let mut job = connection
            .prepare_cached(
                "UPDATE periskope_inbox_jobs
                 SET state = 'running', claims = claims + 1, lease_until = ?2, waiting = 1
                 WHERE id = ?1
                 RETURNING id, attempts + 1, event, dedup_key, body, signing_key, received_at, path, claims, traceparent",
            )?
            .query_row(params![id, lease_until], claimed_job)?;
        job.follows = Some(follows);
        open_attempt(connection, &job, now, attempts_kept)?;
        follows = id;
        claimed.push(job);
    }
    Ok(())
}

fn claimed_job(row: &Row<'_>) -> rusqlite::Result<ClaimedJob> {
    Ok(ClaimedJob {
        id: row.get(0)?,
        attempt: row.get(1)?,
        fencing_token: row.get::<_, i64>(8)?.unsigned_abs(),
        event: row.get(2)?,
        key: row.get(3)?,
        body: Bytes::from(row.get::<_, Vec<u8>>(4)?),
        signing_key: row.get(5)?,
        received_at: from_millis(row.get(6)?),
        path: row.get(7)?,
        traceparent: row.get(9)?,
        follows: None,
    })
}

fn job_summary(row: &Row<'_>) -> rusqlite::Result<JobSummary> {
    let state: String = row.get(3)?;
    Ok(JobSummary {
        id: row.get(0)?,
        event: row.get(1)?,
        key: row.get(2)?,
        state: JobState::from_name(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown state {state}").into(),
            )
        })?,
        attempts: row.get(4)?,
        last_error: row.get(5)?,
        received_at: from_millis(row.get(6)?),
        run_at: from_millis(row.get(7)?),
        lease_until: row.get::<_, Option<i64>>(8)?.map(from_millis),
        handled_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("periskope-inbox-unit-{}-{name}.db", std::process::id()));
            let file = TempFile(path);
            file.remove();
            file
        }

        fn remove(&self) {
            for suffix in ["", "-wal", "-shm", "-journal", "-lock"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
            }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            self.remove();
        }
    }

    fn pragma(store: &SqliteStore, name: &'static str) -> String {
        let query = store.call(move |connection| {
            connection.query_row(&format!("PRAGMA {name}"), [], |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Integer(value) => value.to_string(),
                    rusqlite::types::ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
                    other => format!("{other:?}"),
                })
            })
        });
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(query).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    fn delivery(id: &str) -> NewDelivery {
        use crate::dedup::{EventKeys, KeyFn};
        let body = format!(r#"{{"event":"message.created","data":{{"message_id":"{id}","chat_id":"c"}}}}"#);
        let event = crate::WebhookEvent::decode(Bytes::from(body)).unwrap();
        NewDelivery::new(&event, &EventKeys::default().key(&event), SystemTime::now())
    }

    /// One operation that panics (a bug, or an arithmetic overflow) is answered with an error
    /// and its writes are undone; the writer thread goes on serving everyone else.
    #[test]
    fn a_panicking_operation_is_answered_with_an_error_and_the_writer_keeps_serving() {
        let file = TempFile::new("panic");
        let store = SqliteStore::open(&file.0).unwrap();
        let runtime = runtime();
        let panicked = runtime.block_on(store.call(|connection| -> rusqlite::Result<()> {
            connection.execute("UPDATE periskope_inbox_owner SET opened_at = -1", [])?;
            panic!("an operation bug");
        }));
        assert!(matches!(panicked, Err(InboxError::Storage(_))), "{panicked:?}");
        let opened_at: i64 = runtime
            .block_on(store.call(|connection| {
                connection.query_row("SELECT opened_at FROM periskope_inbox_owner", [], |row| row.get(0))
            }))
            .unwrap();
        assert_ne!(opened_at, -1, "the panicking operation's write was undone");
        assert_eq!(runtime.block_on(store.insert(delivery("after-panic"))).unwrap(), Stored::New);
    }

    /// The read connections are opened read-only: a read that tries to write is refused.
    #[test]
    fn reads_run_on_read_only_connections() {
        let file = TempFile::new("read-only-reads");
        let store = SqliteStore::open(&file.0).unwrap();
        let written = runtime()
            .block_on(store.read(|connection| {
                connection.execute("UPDATE periskope_inbox_owner SET opened_at = -1", [])
            }));
        assert_eq!(written, Err(InboxError::ReadOnly));
    }

    /// A read that panics is answered with an error; its connection goes on serving.
    #[test]
    fn a_panicking_read_is_answered_with_an_error_and_its_connection_keeps_serving() {
        let file = TempFile::new("read-panic");
        let store = SqliteStore::options().read_connections(1).open(&file.0).unwrap();
        let runtime = runtime();
        let panicked = runtime.block_on(store.read(|_| -> rusqlite::Result<()> { panic!("a query bug") }));
        assert!(matches!(panicked, Err(InboxError::Storage(_))), "{panicked:?}");
        assert_eq!(runtime.block_on(store.stats(SystemTime::now())).unwrap(), InboxStats::default());
    }

    /// An operation over many jobs gets a transaction of its own: what was queued before it is
    /// committed before it runs, and it is committed before what was queued after it runs, as
    /// a second connection sees.
    #[test]
    fn an_operation_over_many_jobs_runs_in_a_transaction_of_its_own() {
        let file = TempFile::new("alone");
        let store = SqliteStore::open(&file.0).unwrap();
        let path = file.0.clone();
        let committed = move || -> rusqlite::Result<(i64, i64)> {
            let outside = Connection::open(&path)?;
            outside.query_row(
                "SELECT (SELECT count(*) FROM periskope_inbox_jobs), (SELECT opened_at FROM periskope_inbox_owner)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        };
        // The writer is held while the others queue, so that they could all share one batch.
        let (release, gate) = mpsc::channel::<()>();
        let held = store.call(move |_| {
            let _ = gate.recv();
            Ok(())
        });
        let before = store.insert(delivery("before"));
        let seen_by_alone = {
            let committed = committed.clone();
            store.call_alone(move |connection| {
                let seen = committed()?;
                connection.execute("UPDATE periskope_inbox_owner SET opened_at = -1", [])?;
                Ok(seen)
            })
        };
        let seen_after = store.call(move |_| committed());
        release.send(()).unwrap();
        let runtime = runtime();
        runtime.block_on(held).unwrap();
        assert_eq!(runtime.block_on(before).unwrap(), Stored::New);
        assert_eq!(
            runtime.block_on(seen_by_alone).unwrap().0,
            1,
            "the delivery queued before it was committed"
        );
        assert_eq!(runtime.block_on(seen_after).unwrap().1, -1, "it was committed before the next operation");
    }

    /// The checkpointer copies the WAL into the file while the store runs, though SQLite's
    /// automatic checkpoint is off on the writer's connection.
    #[test]
    fn the_checkpointer_copies_the_wal_into_the_file() {
        use crate::dedup::{EventKeys, KeyFn};
        let file = TempFile::new("checkpoint");
        let store = SqliteStore::open(&file.0).unwrap();
        assert_eq!(pragma(&store, "wal_autocheckpoint"), "0");
        let before = std::fs::metadata(&file.0).unwrap().len();
        let runtime = runtime();
        // 400 bodies of 16 KiB: several times the pages after which the checkpointer is woken.
        let text = "x".repeat(16 * 1024);
        for n in 0..400 {
            let body = format!(
                r#"{{"event":"message.created","data":{{"message_id":"big-{n}","chat_id":"c","body":"{text}"}}}}"#
            );
            let event = crate::WebhookEvent::decode(Bytes::from(body)).unwrap();
            let delivery = NewDelivery::new(&event, &EventKeys::default().key(&event), SystemTime::now());
            runtime.block_on(store.insert(delivery)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&file.0).unwrap().len() <= before {
            assert!(std::time::Instant::now() < deadline, "no checkpoint copied the WAL into the file");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Dropped on a runtime thread, the last clone does not wait for the writer to finish its
    /// queue (which may hold fsyncs); the writer answers what was queued and closes by itself.
    #[test]
    fn dropping_the_last_clone_inside_a_runtime_does_not_wait_for_the_writer() {
        let file = TempFile::new("drop");
        let store = SqliteStore::open(&file.0).unwrap();
        let (release, gate) = mpsc::channel::<()>();
        let blocked = store.call(move |_| {
            let _ = gate.recv();
            Ok(())
        });
        let (dropped, was_dropped) = mpsc::channel();
        let dropper = std::thread::spawn(move || {
            runtime().block_on(async move { drop(store) });
            let _ = dropped.send(());
        });
        let returned = was_dropped.recv_timeout(Duration::from_secs(10));
        release.send(()).unwrap();
        dropper.join().unwrap();
        assert!(returned.is_ok(), "the drop waited for the writer's queue");
        runtime().block_on(blocked).expect("the queued operation is still answered");
        // Reopening waits for the closing writer instead of finding the file locked.
        let reopened = SqliteStore::open(&file.0).unwrap();
        assert_eq!(runtime().block_on(reopened.insert(delivery("reopened"))).unwrap(), Stored::New);
    }

    /// A file written by version 1 of the schema (0.1's), made here by hand, is upgraded when
    /// opened: its jobs keep everything and run on the path `/`, which is what they ran on.
    #[test]
    fn a_version_1_file_is_upgraded() {
        let file = TempFile::new("v1");
        let v1 = Connection::open(&file.0).unwrap();
        v1.execute_batch(
            "CREATE TABLE periskope_inbox_jobs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
                 ordering_key TEXT, body BLOB NOT NULL, signing_key TEXT, received_at INTEGER NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                 run_at INTEGER NOT NULL, lease_until INTEGER, last_error TEXT, handled_at INTEGER);
             CREATE INDEX periskope_inbox_due ON periskope_inbox_jobs (state, run_at);
             CREATE INDEX periskope_inbox_order ON periskope_inbox_jobs (ordering_key, id)
                 WHERE ordering_key IS NOT NULL;
             CREATE INDEX periskope_inbox_handled ON periskope_inbox_jobs (handled_at) WHERE state = 'done';
             CREATE TABLE periskope_inbox_owner (id INTEGER PRIMARY KEY CHECK (id = 1), opened_at INTEGER NOT NULL);
             INSERT INTO periskope_inbox_jobs (dedup_key, event, ordering_key, body, received_at, run_at)
                 VALUES ('message.created|2:m1', 'message.created', 'chat|c',
                         CAST('{\"event\":\"message.created\",\"data\":{\"message_id\":\"m1\"}}' AS BLOB),
                         0, 0);
             INSERT INTO periskope_inbox_jobs (dedup_key, event, body, received_at, run_at, state, attempts)
                 VALUES ('dead', 'message.created', CAST('{}' AS BLOB), 0, 0, 'dead', 8);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(v1);

        let store = SqliteStore::open(&file.0).unwrap();
        assert_eq!(pragma(&store, "user_version"), SCHEMA_VERSION.to_string());
        let runtime = runtime();
        let record = runtime.block_on(store.get(1)).unwrap().unwrap();
        assert_eq!((record.summary.key.as_str(), record.path.as_str()), ("message.created|2:m1", "/"));
        let claimed =
            runtime.block_on(store.claim(ClaimRequest::new(10, Duration::from_secs(60), 3))).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].id, claimed[0].path.as_str()), (1, "/"));
        // The old dead letter counts as dead from the upgrade on.
        let hour = Duration::from_secs(3600);
        assert_eq!(runtime.block_on(store.purge_dead(SystemTime::now() - hour, 10)).unwrap(), 0);
        assert_eq!(runtime.block_on(store.purge_dead(SystemTime::now() + hour, 10)).unwrap(), 1);
        assert_eq!(runtime.block_on(store.insert(delivery("after-upgrade"))).unwrap(), Stored::New);
    }

    /// A file written by version 2 of the schema, made here by hand as 0.2 wrote it (a running
    /// job a killed process left behind, a dead letter), is upgraded to the current version when
    /// opened:
    /// the jobs keep everything, the console's queries work on them, and attempts from then on
    /// are recorded.
    #[test]
    fn a_version_2_file_is_upgraded_to_the_current_version() {
        use crate::inbox::{ConsoleStore, JobFilter};
        let file = TempFile::new("v2");
        let v2 = Connection::open(&file.0).unwrap();
        v2.execute_batch(
            "CREATE TABLE periskope_inbox_jobs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE, event TEXT NOT NULL,
                 ordering_key TEXT, body BLOB NOT NULL, signing_key TEXT, received_at INTEGER NOT NULL,
                 state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                 run_at INTEGER NOT NULL, lease_until INTEGER, last_error TEXT, handled_at INTEGER,
                 path TEXT NOT NULL DEFAULT '/', dead_at INTEGER);
             CREATE INDEX periskope_inbox_due ON periskope_inbox_jobs (state, run_at);
             CREATE INDEX periskope_inbox_order ON periskope_inbox_jobs (ordering_key, id)
                 WHERE ordering_key IS NOT NULL;
             CREATE INDEX periskope_inbox_handled ON periskope_inbox_jobs (handled_at) WHERE state = 'done';
             CREATE INDEX periskope_inbox_dead ON periskope_inbox_jobs (dead_at) WHERE state = 'dead';
             CREATE TABLE periskope_inbox_owner (id INTEGER PRIMARY KEY CHECK (id = 1), opened_at INTEGER NOT NULL);
             INSERT INTO periskope_inbox_jobs
                     (dedup_key, event, ordering_key, body, received_at, run_at, state, attempts, lease_until, path)
                 VALUES ('message.created|2:m1', 'message.created', 'chat|c',
                         CAST('{\"event\":\"message.created\",\"data\":{\"message_id\":\"m1\"}}' AS BLOB),
                         1000, 1000, 'running', 1, 5000, '/hooks');
             INSERT INTO periskope_inbox_jobs
                     (dedup_key, event, body, received_at, run_at, state, attempts, last_error, dead_at)
                 VALUES ('dead', 'reaction.created', CAST('{}' AS BLOB), 2000, 2000, 'dead', 8, 'CRM down', 3000);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(v2);

        let store = SqliteStore::open(&file.0).unwrap();
        assert_eq!(pragma(&store, "user_version"), SCHEMA_VERSION.to_string());
        let runtime = runtime();
        let chat = JobFilter { chat: Some("c".to_owned()), ..JobFilter::default() };
        let found = runtime.block_on(store.search(chat)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].key.as_str(), found[0].state), ("message.created|2:m1", JobState::Pending));
        assert!(runtime.block_on(store.attempts(found[0].id)).unwrap().is_empty(), "no history before v3");
        let dead = runtime.block_on(store.dead_letters_by_event(5)).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].event.as_str(), dead[0].latest_error.as_deref()),
            ("reaction.created", Some("CRM down"))
        );
        let untold = runtime.block_on(store.unalerted_dead_letters(10)).unwrap();
        assert_eq!(untold, [], "dead letters of earlier versions count as told");

        let claimed =
            runtime.block_on(store.claim(ClaimRequest::new(10, Duration::from_secs(60), 3))).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!((claimed[0].attempt, claimed[0].path.as_str()), (2, "/hooks"));
        assert_eq!(claimed[0].traceparent, None, "no accepting context before v7");
        runtime.block_on(store.complete(claimed[0].lease(), SystemTime::now())).unwrap();
        let history = runtime.block_on(store.attempts(claimed[0].id)).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!((history[0].number, history[0].outcome), (2, crate::inbox::AttemptOutcome::Handled));
        // Purging a job removes its attempts.
        assert_eq!(runtime.block_on(store.purge(Selection::Job(claimed[0].id))).unwrap(), 1);
        let left: i64 = runtime
            .block_on(store.call(|connection| {
                connection.query_row("SELECT count(*) FROM periskope_inbox_attempts", [], |row| row.get(0))
            }))
            .unwrap();
        assert_eq!(left, 0);
    }

    /// Each job keeps its last `attempts_kept` attempts; the others are forgotten at claim.
    #[test]
    fn only_the_last_attempts_are_kept() {
        use crate::inbox::ConsoleStore;
        let file = TempFile::new("kept");
        let store = SqliteStore::options().attempts_kept(2).open(&file.0).unwrap();
        let runtime = runtime();
        runtime.block_on(store.insert(delivery("kept"))).unwrap();
        let now = SystemTime::now();
        for _ in 0..3 {
            let job =
                runtime.block_on(store.claim(ClaimRequest::new(1, Duration::from_secs(60), 9))).unwrap();
            runtime.block_on(store.fail(job[0].lease(), "again".to_owned(), Some(now))).unwrap();
        }
        let numbers: Vec<u32> =
            runtime.block_on(store.attempts(1)).unwrap().iter().map(|attempt| attempt.number).collect();
        assert_eq!(numbers, [2, 3]);
    }

    /// A SIGKILL test cannot see an fsync that was skipped: the settings themselves are checked.
    #[test]
    fn commits_are_synced_to_disk_in_wal_mode() {
        let file = TempFile::new("pragmas");
        let store = SqliteStore::open(&file.0).unwrap();
        // 2 = FULL: the WAL is synced on every commit, before the answer.
        assert_eq!(pragma(&store, "synchronous"), "2");
        assert_eq!(pragma(&store, "journal_mode"), "wal");
        // Normal locking, so that a reader in another process can open the file beside the
        // writer; the lock file keeps other writers out.
        assert_eq!(pragma(&store, "locking_mode"), "normal");
        assert_eq!(pragma(&store, "user_version"), SCHEMA_VERSION.to_string());
    }
}
