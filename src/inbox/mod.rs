//! A durable inbox: store every verified delivery before answering `200`, then handle it from
//! storage, with retries, in a worker (feature `inbox`).
//!
//! ```no_run
//! use axum::Router;
//! use periskope_webhook::inbox::{Inbox, SqliteStore};
//! use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = Inbox::new(SqliteStore::open("periskope-inbox.db")?);
//!
//! // The worker runs the handlers, from storage, with retries.
//! let router = EventRouter::new().on_message_created(|event: WebhookEvent| async move {
//!     println!("{:?}", event.event().message().and_then(|message| message.body.as_deref()));
//!     Ok::<_, std::io::Error>(())
//! });
//! let worker = tokio::spawn(inbox.worker(router).run(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }));
//!
//! // The route only stores the verified delivery, and answers 200 once it is on disk.
//! let app: Router = Router::new().route_service(
//!     "/webhooks/periskope",
//!     tower::Layer::layer(&PeriskopeWebhookLayer::new("peri_demo"), inbox.acceptor()),
//! );
//! # let _ = (app, worker);
//! # Ok(())
//! # }
//! ```
//!
//! A handler that does real work (syncing a CRM, replying through Periskope's API) risks the
//! sender's timeout when it runs inline, and a crash after the `200` loses the delivery for good.
//! With the inbox:
//!
//! - the [`Acceptor`] takes the handler's place behind
//!   [`PeriskopeWebhookLayer`](crate::PeriskopeWebhookLayer): it stores the verified body, the
//!   event name, the [de-duplication key](crate::dedup::KeyFn), the signing key's id and the
//!   time received and the path it arrived on, and answers `200` only once the write is
//!   durable (committed and synced to disk), `503` when storage fails or the store is full, so
//!   that Periskope retries;
//! - the same occurrence stored twice is a no-op that still answers `200`, so the layer's own
//!   [de-duplication](crate::dedup) is unnecessary with the inbox: leave it off;
//! - the [`Worker`] claims stored jobs with a lease, runs the handler (an
//!   [`EventRouter`](crate::EventRouter), an axum `Router`, any tower service) with a
//!   per-attempt timeout, and retries failures with exponential backoff and jitter until the
//!   job becomes a dead letter.
//!
//! # Guarantees
//! - **At least once.** A delivery answered `200` is handled at least once, across crashes
//!   and restarts. It is handled twice only when a crash, a timeout or an expired lease
//!   interrupted an attempt, or when the store could not record that an attempt succeeded
//!   (the job is then run again once its lease expires): make handlers idempotent, keyed by
//!   [`Attempt::key`].
//! - **In order per chat.** Jobs of one chat (or one org phone, for `org.phone.*`) are handled
//!   one at a time, in the order they were acknowledged: a job waits while an earlier job of
//!   its chat is pending, running or backing off, and a retried job waits while its chat runs.
//!   A dead letter no longer holds its chat back, so a later job can then overtake it. Jobs of
//!   different chats run concurrently. A chat with a backlog is claimed in runs of up to
//!   [`WorkerConfig::run_length`] jobs, run one after the other, each as soon as the one before
//!   it was handled: a crash before that one's settlement was committed runs both again, in
//!   order. Periskope's own delivery order is not documented; this
//!   is the order in which deliveries arrived, and two in flight together may run in either
//!   order. [`InboxStore`] states the contract every store keeps.
//! - **Leases, renewed and fenced.** While a handler runs, the worker renews its lease every
//!   third of [`WorkerConfig::lease`]; a worker that cannot (paused, cut off) drops the handler
//!   before the lease ends. A claim that takes an expired job over gets a new fencing token
//!   ([`Attempt::fencing_token`]), and the late attempt can no longer settle it.
//! - **Bounded attempts.** The attempt is counted when the job is claimed (a job that follows
//!   in a run: when it is settled; after a crash, by the claim that takes it over, alone), so
//!   a job that crashes the process every time still ends as a dead letter after
//!   [`WorkerConfig::max_attempts`]. A claim still pending at shutdown is waited for during
//!   the grace period, and what it took is given back uncounted; a claim the worker gave up on
//!   (after [`WorkerConfig::store_timeout`], or past the grace period) may still be carried
//!   out by the store: what it took is given back, uncounted, as soon as it answers (if the
//!   process ends first, when the lease expires; the embedded store: when the file is next
//!   opened). An embedded-store operation whose caller gave up before it started is skipped.
//! - **Bounded waits.** Every store call of the worker is bounded by
//!   [`WorkerConfig::store_timeout`], and the shutdown is seen while one is pending: `run`
//!   returns at most [`WorkerConfig::shutdown_grace`] plus `store_timeout` after its shutdown
//!   future completes.
//! - **No configuration can panic.** Every [`WorkerConfig`] value is accepted: durations
//!   saturate, so `Duration::MAX` means "no limit". An operation that panics inside the
//!   embedded store fails that call only ([`InboxError::Storage`]); the store keeps serving.
//! - **Full is never acknowledged.** A [`SqliteStore`] with a
//!   [`max_size`](SqliteOptions::max_size) refuses new deliveries once full (`503
//!   inbox_full`, counted and logged at ERROR), still answers copies of stored ones as
//!   duplicates, and keeps claiming, settling and purging, so that the worker drains it.
//!
//! # What it stores
//! The inbox holds message bodies, names and phone numbers. Handled jobs are purged after
//! [`WorkerConfig::retention`] (24 hours by default, as long as the usual de-duplication
//! window: until then, the same occurrence is answered as a duplicate; after it, accepted
//! again). Dead letters stay until you [retry](InboxStore::retry) or [purge](InboxStore::purge)
//! them, or, with [`WorkerConfig::dead_retention`], until they have been dead that long; each
//! job that becomes one is logged at ERROR (event name, job id and attempts, no content), and
//! told to [`Inbox::on_alert`]'s callback with its last error masked ([`Alert`]).
//! Protect the file or database like the rest of your customer data: on Unix a new inbox file
//! (and its WAL) is readable and writable by its owner only.

mod acceptor;
mod alert;
mod filter_sql;
#[cfg(feature = "testing")]
mod memory;
#[cfg(feature = "inbox-postgres")]
mod postgres;
mod queries;
mod sqlite;
#[cfg(feature = "opentelemetry")]
mod trace_context;
mod worker;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Notify;

pub use acceptor::{AcceptFuture, Accepted, Acceptor};
pub use alert::{Alert, OnAlert, UnalertedDeadLetter};
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use memory::MemoryInboxStore;
#[cfg(feature = "inbox-postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use queries::{
    AttemptOutcome, AttemptRecord, ConsoleStore, DeadLetters, JobFilter, MaskedStep, MinuteCounts,
};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use worker::{Attempt, Worker, WorkerConfig, WorkerHandle};

use crate::dedup::{DedupKey, EventKeys, KeyFn};
use crate::event::{Event, WebhookEvent};

/// The id of a stored job: increasing in the order deliveries were stored.
pub type JobId = i64;

/// A verified delivery to store.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewDelivery {
    /// The occurrence's de-duplication key: a second delivery with this key is not stored.
    pub key: String,
    /// The event name as sent.
    pub event: String,
    /// The chat (or org phone) the job is ordered within, if any.
    pub ordering_key: Option<String>,
    /// The raw body, exactly as received and verified.
    pub body: Bytes,
    /// The id of the signing key that verified the body, if verification was on.
    pub signing_key: Option<String>,
    /// When the delivery arrived.
    pub received_at: SystemTime,
    /// The path it arrived on, as the acceptor saw it: the worker calls the handler with it.
    pub path: String,
    /// The context of the span that accepted it, as a W3C `traceparent` (two random ids and
    /// flags, nothing about the delivery): with the `opentelemetry` feature the acceptor fills
    /// it from the `periskope.delivery` span, and each attempt's span links to it. `None` by
    /// default.
    pub traceparent: Option<String>,
}

impl NewDelivery {
    /// The delivery of `event` under `key`, received at `received_at`, ordered within its chat
    /// ([`ordering_key`]), on the path `/`.
    pub fn new(event: &WebhookEvent, key: &DedupKey, received_at: SystemTime) -> Self {
        NewDelivery {
            key: key.as_str().to_owned(),
            event: event.name().to_owned(),
            ordering_key: ordering_key(event.event()),
            body: event.body().clone(),
            signing_key: None,
            received_at,
            path: "/".to_owned(),
            traceparent: None,
        }
    }
}

/// What [`InboxStore::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The delivery is stored durably as a new job.
    New,
    /// A job with the same key is already stored: nothing was written.
    Duplicate,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting to be claimed (new, or backing off before a retry).
    Pending,
    /// Claimed by a worker; its lease runs until [`JobSummary::lease_until`].
    Running,
    /// Handled successfully; purged after the retention period.
    Done,
    /// Failed [`WorkerConfig::max_attempts`] times; kept until retried or purged.
    Dead,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 4] = [JobState::Pending, JobState::Running, JobState::Done, JobState::Dead];

    /// The state's name: `pending`, `running`, `done` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    /// The state named `name`, as [`JobState::as_str`] spells it.
    pub fn from_name(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job handed to a worker by [`InboxStore::claim`]: its lease is `(id, attempt, fencing
/// token)`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// This attempt's number, from 1; counted when the job was claimed.
    pub attempt: u32,
    /// This claim's fencing token: the job's claim counter, which only ever grows (retry,
    /// replay and release reset or take back the attempt number, never this). See [`Lease`].
    pub fencing_token: u64,
    /// The event name.
    pub event: String,
    /// The de-duplication key.
    pub key: String,
    /// The raw body.
    pub body: Bytes,
    /// The id of the signing key that verified the body.
    pub signing_key: Option<String>,
    /// When the delivery arrived.
    pub received_at: SystemTime,
    /// The path the delivery arrived on.
    pub path: String,
    /// The context of the span that accepted the delivery, as stored
    /// ([`NewDelivery::traceparent`]); not checked by the store.
    pub traceparent: Option<String>,
    /// The job of its chat this one was claimed behind, in one run ([`ClaimRequest::run`]): it
    /// runs once that job was handled, and is released unrun otherwise. `None` for the first
    /// job of a run, and for a job claimed alone.
    pub follows: Option<JobId>,
}

impl ClaimedJob {
    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease { id: self.id, attempt: self.attempt, token: self.fencing_token }
    }
}

/// A claim on a job. It holds the job while its fencing token is the job's latest claim:
/// settling or renewing it does nothing once another claim (after the lease expired) took the
/// job over, whatever attempt number that claim counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub id: JobId,
    /// The attempt the claim counted.
    pub attempt: u32,
    /// The claim's fencing token ([`ClaimedJob::fencing_token`]).
    pub token: u64,
}

impl Lease {
    /// The fencing token as the SQL stores keep it: a signed 64-bit integer.
    pub(crate) fn stored_token(self) -> i64 {
        i64::try_from(self.token).unwrap_or(i64::MAX)
    }
}

/// How [`InboxStore::claim`] claims.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// At most this many runs: jobs claimed alone, or first in a run.
    pub limit: usize,
    /// At most this many jobs in a run (1, the default: every job alone). Behind a chat's first
    /// queued job, when it was never attempted, a claim takes the chat's next queued jobs that
    /// are due and were never attempted either, up to this many in all, and while the bodies of
    /// those that follow total at most [`MAX_RUN_BYTES`] (see [`InboxStore`]).
    pub run: usize,
    /// How long the claim holds each job before another worker may take it.
    pub lease: Duration,
    /// A job that already had this many attempts becomes a dead letter (dead from `now`)
    /// instead of being claimed (its last attempt's lease expired: the worker crashed or hung).
    pub max_attempts: u32,
    /// The current time.
    pub now: SystemTime,
}

impl ClaimRequest {
    /// Up to `limit` jobs, each alone, leased for `lease`, dead after `max_attempts`, claimed now.
    pub fn new(limit: usize, lease: Duration, max_attempts: u32) -> Self {
        ClaimRequest { limit, run: 1, lease, max_attempts, now: SystemTime::now() }
    }

    /// Runs of up to `jobs` jobs of a chat ([`ClaimRequest::run`]).
    pub fn runs_of(mut self, jobs: usize) -> Self {
        self.run = jobs;
        self
    }
}

/// One job as the operations API lists it (no body).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobSummary {
    /// The job.
    pub id: JobId,
    /// The event name.
    pub event: String,
    /// The de-duplication key (it can hold phone numbers: do not log it).
    pub key: String,
    /// Its state.
    pub state: JobState,
    /// Attempts counted so far.
    pub attempts: u32,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// When the delivery arrived.
    pub received_at: SystemTime,
    /// When a pending job may next be claimed.
    pub run_at: SystemTime,
    /// Until when a running job's lease holds.
    pub lease_until: Option<SystemTime>,
    /// When the job was handled.
    pub handled_at: Option<SystemTime>,
}

/// One job with its body, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobRecord {
    /// Everything [`InboxStore::list`] shows.
    pub summary: JobSummary,
    /// The raw body as received.
    pub body: Bytes,
    /// The id of the signing key that verified the body.
    pub signing_key: Option<String>,
    /// The chat (or org phone) the job is ordered within.
    pub ordering_key: Option<String>,
    /// The path the delivery arrived on.
    pub path: String,
}

/// Which jobs [`InboxStore::list`] returns: oldest first, after `after` if given.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only jobs in this state; all states when `None`.
    pub state: Option<JobState>,
    /// Only jobs with a larger id (for paging).
    pub after: Option<JobId>,
    /// At most this many; 100 when 0.
    pub limit: usize,
}

impl ListQuery {
    /// Up to `limit` jobs in `state` (any state when `None`), oldest first.
    pub fn new(state: Option<JobState>, limit: usize) -> Self {
        ListQuery { state, after: None, limit }
    }

    /// The page after job `id`.
    pub fn after(mut self, id: JobId) -> Self {
        self.after = Some(id);
        self
    }

    pub(crate) fn effective_limit(&self) -> usize {
        if self.limit == 0 { 100 } else { self.limit }
    }
}

/// The jobs [`InboxStore::retry`] and [`InboxStore::purge`] act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One job.
    Job(JobId),
    /// Every job in a state.
    State(JobState),
}

/// Figures for metrics, from [`InboxStore::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxStats {
    /// Jobs waiting to be claimed, backing-off ones included.
    pub pending: u64,
    /// Jobs claimed by a worker right now.
    pub running: u64,
    /// Handled jobs not yet purged by retention.
    pub done: u64,
    /// Dead letters.
    pub dead: u64,
    /// Attempts counted on pending and running jobs (how much retrying is going on).
    pub attempts_in_queue: u64,
    /// Age of the oldest pending or running job.
    pub oldest_pending_age: Option<Duration>,
}

impl InboxStats {
    /// The queue depth: pending plus running jobs.
    pub fn queue_depth(&self) -> u64 {
        self.pending + self.running
    }
}

/// Why the inbox could not store or read.
///
/// Messages name the file and the engine's reason; they never hold a body or a key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboxError {
    /// The store could not be opened: missing directory, unreadable or corrupt file.
    Open {
        /// The file or database.
        location: String,
        /// The engine's reason.
        reason: String,
    },
    /// Another process (or store in this process) has the embedded file open.
    Locked {
        /// The file.
        location: String,
    },
    /// The schema was written by a newer version of this crate.
    NewerSchema {
        /// The schema version found.
        found: i64,
        /// The newest version this crate knows.
        supported: i64,
    },
    /// A read or write failed (I/O error, connection lost).
    Storage(String),
    /// The store is full ([`SqliteOptions::max_size`], or the disk): new deliveries are
    /// refused until handled jobs are purged; the worker still drains it.
    Full,
    /// The store was shut down.
    Closed,
    /// The store was opened read-only ([`SqliteOptions::read_only`]): it cannot write.
    ReadOnly,
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboxError::Open { location, reason } => {
                write!(f, "cannot open the inbox at {location}: {reason}")
            }
            InboxError::Locked { location } => write!(
                f,
                "the inbox at {location} is in use by another process; one process writes an embedded inbox \
                 (open it read-only to inspect it beside that process; use the PostgreSQL store to share a \
                 queue between replicas)"
            ),
            InboxError::NewerSchema { found, supported } => write!(
                f,
                "the inbox schema is version {found}, newer than this version of periskope-webhook \
                 understands ({supported})"
            ),
            InboxError::Storage(reason) => write!(f, "inbox storage failed: {reason}"),
            InboxError::Full => {
                f.write_str("the inbox is full: new deliveries are refused until handled jobs are purged")
            }
            InboxError::Closed => f.write_str("the inbox store is shut down"),
            InboxError::ReadOnly => f.write_str("the inbox store is open read-only"),
        }
    }
}

impl std::error::Error for InboxError {}

/// Where the inbox keeps its jobs: [`SqliteStore`] (one process, a file), or PostgreSQL (several
/// replicas sharing one queue).
///
/// Every method is atomic. Writes are durable when their future resolves `Ok`.
///
/// # Order and exclusion
/// Every store keeps this contract, which one conformance suite checks on each
/// (`tests/inbox/conformance.rs`). A job's *ordering key* is its chat (or org phone,
/// [`ordering_key`]); jobs without one are not ordered.
/// - **Exclusion.** Jobs with the same ordering key running under live leases were all taken
///   by one claim: a job alone, or one run (below). The store enforces it inside the claim
///   (PostgreSQL: a row per busy chat, taken with an insert that conflicts; SQLite: its single
///   writer checks it), never from a snapshot that another claim can change.
/// - **Order.** A chat's jobs run one at a time, in the order they were acknowledged:
///   - a job waits while an earlier job of its chat (a smaller id) is pending, waiting for a
///     retry, or running (in a run, it is claimed with it, and runs after it);
///   - a dead job holds nothing back, so a later job may then overtake it;
///   - a retried or replayed job waits while another job of its chat runs under a live lease,
///     even a later one.
///   - Deliveries of one chat that were in flight together, neither acknowledged before the
///     other was received, may run in either order: their commits can land in either order,
///     and the store does not serialize a chat's inserts to hide it.
/// - **Running, and expired leases.** A job is running from its claim until it is settled
///   ([`complete`](InboxStore::complete), [`fail`](InboxStore::fail),
///   [`release`](InboxStore::release)). While its lease is live, nothing else of its chat is
///   claimed. Once its lease has expired (the worker died, hung, or was cut off from the
///   store) the job is due again, and its chat is free for a retried or replayed job: the
///   next claim takes it over, with a new fencing token, and from then on the late attempt's
///   settlements and renewals do nothing. An attempt whose lease expired may therefore still
///   be running beside the next one; the worker drops a handler whose lease it could not renew
///   before the lease ends.
/// - **Runs.** With [`ClaimRequest::run`] above 1, a claim that takes a chat's first queued
///   job, when it was never attempted, also takes the chat's next queued jobs, in order, as
///   long as each is due and was never attempted, up to `run` jobs in all and
///   [`MAX_RUN_BYTES`] of bodies behind the first. Each is leased as
///   the first is, with a fencing token of its own, and names the job it follows
///   ([`ClaimedJob::follows`]). The attempt of a job that follows is counted when it is
///   settled, not when it is claimed: the worker runs it only once the job before it was
///   handled, without a round trip to the store between them, and [releases](InboxStore::release)
///   it unrun otherwise. A job that was attempted (a retry, a lease that expired) is claimed
///   alone, so that a job that fails, or crashes the process, holds no run behind it.
pub trait InboxStore: Clone + Send + Sync + 'static {
    /// The answer of [`InboxStore::insert`].
    type InsertFuture: Future<Output = Result<Stored, InboxError>> + Send + 'static;

    /// Stores `delivery` as a pending job, unless a job with its key is stored already.
    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture;

    /// Claims up to `request.limit` jobs that are due (pending and past their `run_at`, or
    /// running with an expired lease) and not held back by an earlier job of their chat,
    /// the longest due first; counts an attempt on each and leases it. Behind each, in runs
    /// ([`ClaimRequest::run`]), the jobs that follow it, leased uncounted; the answer lists
    /// each run's jobs in order.
    fn claim(
        &self,
        request: ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, InboxError>> + Send;

    /// Marks the job handled, if `lease` still holds it; its attempts are then `lease.attempt`.
    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send;

    /// Records a failed attempt, if `lease` still holds the job: pending again from `retry_at`,
    /// or a dead letter (dead from now) when `retry_at` is `None`; its attempts are then
    /// `lease.attempt`.
    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;

    /// Gives the job back without counting the attempt (graceful shutdown, a run stopped
    /// before it), if `lease` still holds it: its attempts are then `lease.attempt - 1`.
    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send;

    /// Extends the lease to `until`, if `lease` still holds the job; returns whether it does.
    /// The worker renews every third of the lease while a handler runs.
    fn renew(&self, lease: Lease, until: SystemTime)
    -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// Whether `lease` still holds its job: its fencing token is the job's latest claim and the
    /// job is running. A handler that writes elsewhere can check it before it commits.
    fn holds(&self, lease: Lease) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// Lists jobs, oldest first, without bodies.
    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send;

    /// One job with its body.
    fn get(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, InboxError>> + Send;

    /// Makes dead or pending jobs due now, with their attempts reset; returns how many.
    /// Running and done jobs are left alone.
    fn retry(
        &self,
        selection: Selection,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Deletes jobs; returns how many. A purged key is accepted again.
    fn purge(&self, selection: Selection) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Deletes at most `limit` of the jobs handled before `before`, in one commit; returns how
    /// many. [Retention](WorkerConfig::retention) calls it a batch at a time, until a call
    /// deletes fewer than `limit`, and rests between calls, so that the deliveries stored
    /// meanwhile never wait for more than one batch.
    fn purge_handled(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Deletes at most `limit` of the dead letters that died before `before`
    /// ([`WorkerConfig::dead_retention`]), in one commit; returns how many. Called as
    /// [`InboxStore::purge_handled`] is.
    fn purge_dead(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Counts for metrics.
    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send;

    /// Up to `limit` dead letters whose death was not yet told ([`InboxStore::mark_alerted`]),
    /// oldest first, for [`Alert::DeadLetter`].
    fn unalerted_dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<UnalertedDeadLetter>, InboxError>> + Send;

    /// Completes when another process may have stored a job after this call, so that an idle
    /// worker claims at once instead of at its next poll ([`WorkerConfig::poll_interval`]): the
    /// worker makes the future before it claims, and waits on it after. The PostgreSQL store
    /// listens for the notification each batch of stored deliveries sends (after a lost
    /// connection it listens again, and the worker polls meanwhile); by default it never
    /// completes: the worker is woken by the acceptor of its own process.
    fn stored_elsewhere(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// How often, at most, a worker that is behind claims (its last claim took runs: more jobs
    /// than it had free slots); zero by default, at once. A store whose claim costs mostly per
    /// claim, not per job, sets a pause, so that each claim takes what arrived meanwhile: fewer,
    /// larger claims. The PostgreSQL store's is 40 ms. A worker that is not behind claims as
    /// soon as a delivery is stored, whatever this says.
    fn busy_claim_interval(&self) -> Duration {
        Duration::ZERO
    }

    /// Remembers that the death of `job` under the claim `fencing_token`
    /// ([`UnalertedDeadLetter::fencing_token`]) was told. A later death of the job, after a
    /// retry, is under a later claim: it is not yet told.
    fn mark_alerted(
        &self,
        job: JobId,
        fencing_token: u64,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;
}

/// A store, the signal that wakes the worker when the acceptor stored a job, and the alerts
/// they share: build the [`Acceptor`] and the [`Worker`] of one process from the same `Inbox`.
#[derive(Clone, Debug)]
pub struct Inbox<St> {
    store: St,
    wake: Arc<Notify>,
    backlog_age: Duration,
    alerts: Option<Arc<alert::Alerts>>,
}

impl<St: InboxStore> Inbox<St> {
    /// An inbox over `store`.
    pub fn new(store: St) -> Self {
        Inbox { store, wake: Arc::new(Notify::new()), backlog_age: alert::DEFAULT_BACKLOG_AGE, alerts: None }
    }

    /// Tells `on_alert` each [`Alert`]: a job that became a dead letter, a store that refused a
    /// delivery as full, a backlog older than [`Inbox::backlog_alert_after`] and its clearing.
    /// The worker built from this inbox tells them from a task of its own, while it runs (its
    /// acceptor reports a full store to it): see [`OnAlert`]. Set it before building them.
    pub fn on_alert(mut self, on_alert: impl OnAlert) -> Self {
        self.alerts = Some(Arc::new(alert::Alerts::new(Arc::new(on_alert), self.backlog_age)));
        self
    }

    /// The age of the oldest pending or running job past which [`Alert::Backlog`] is told
    /// (default 10 minutes).
    pub fn backlog_alert_after(mut self, age: Duration) -> Self {
        self.backlog_age = age;
        if let Some(alerts) = self.alerts.take() {
            self.alerts = Some(Arc::new(alert::Alerts::new(alerts.on_alert(), age)));
        }
        self
    }

    /// The store, for the operations API.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The service that stores deliveries, keyed by [`EventKeys::default`].
    pub fn acceptor(&self) -> Acceptor<St, EventKeys> {
        self.acceptor_with_keys(EventKeys::default())
    }

    /// The service that stores deliveries, keyed by `keys`.
    pub fn acceptor_with_keys<K: KeyFn>(&self, keys: K) -> Acceptor<St, K> {
        Acceptor::new(self.store.clone(), keys, Some(Arc::clone(&self.wake))).alerts(self.alerts.clone())
    }

    /// A worker running `handler` on stored jobs, with [`WorkerConfig::default`].
    pub fn worker<H>(&self, handler: H) -> Worker<St, H> {
        Worker::new(self.store.clone(), handler, Some(Arc::clone(&self.wake))).alerts(self.alerts.clone())
    }
}

/// Reads the inbox's figures from `store` ([`InboxStore::stats`]) and sets the inbox gauges
/// ([`metrics`](crate::metrics): queue depth, attempts, dead letters, oldest pending age). The
/// store answers one query per call: call it every few seconds.
///
/// ```no_run
/// # async fn run(store: periskope_webhook::inbox::SqliteStore) {
/// let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
/// loop {
///     every.tick().await;
///     if let Err(error) = periskope_webhook::inbox::record_metrics(&store).await {
///         eprintln!("inbox metrics: {error}");
///     }
/// }
/// # }
/// ```
///
/// # Errors
/// When the store cannot be read; the gauges keep their last values.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "metrics", feature = "inbox"))))]
pub async fn record_metrics<St: InboxStore>(store: &St) -> Result<(), InboxError> {
    let stats = store.stats(SystemTime::now()).await?;
    crate::metrics::inbox_gauges(crate::metrics::InboxGauges {
        queue_depth: stats.queue_depth(),
        attempts: stats.attempts_in_queue,
        dead_letters: stats.dead,
        oldest_pending: stats.oldest_pending_age,
    });
    Ok(())
}

/// The chat (or org phone) whose jobs are handled in order.
pub fn ordering_key(event: &Event<'_>) -> Option<String> {
    let chat = if let Some(message) = event.message() {
        message.chat_id.as_deref()
    } else if let Some(reaction) = event.reaction() {
        reaction.chat_id.as_deref()
    } else if let Some(chat) = event.chat() {
        chat.chat_id.as_deref()
    } else if let Some(notification) = event.chat_notification() {
        notification.chat_id.as_deref()
    } else if let Some(note) = event.note() {
        note.chat_id.as_deref()
    } else if let Some(info) = event.ticket() {
        let chat = info.chat.as_ref().and_then(|chat| chat.chat_id.as_deref());
        chat.or_else(|| info.message.as_ref().and_then(|message| message.chat_id.as_deref()))
    } else if let Some(phone) = event.phone() {
        return phone.phone_id.as_deref().map(|phone| format!("phone|{phone}"));
    } else {
        None
    };
    chat.map(|chat| format!("chat|{chat}"))
}

/// Awaits `call`, then waits `rest` times as long: what it kept busy (a store's read
/// connection, its writer) is left to everything else that share of the time, and what queued
/// behind it (the deliveries) goes first.
pub(crate) async fn paced<T>(call: impl Future<Output = T>, rest: u32) -> T {
    let started = std::time::Instant::now();
    let output = call.await;
    tokio::time::sleep(started.elapsed() * rest).await;
    output
}

/// `time + duration`, or the latest time the stores can keep when the sum goes past it: a
/// duration from the configuration (a lease, a backoff) may be as large as `Duration::MAX`.
pub(crate) fn saturating_add(time: SystemTime, duration: Duration) -> SystemTime {
    let latest = latest_time();
    time.checked_add(duration).map_or(latest, |sum| sum.min(latest))
}

/// The latest time the stores keep: `i64::MAX` milliseconds after the epoch, or, where
/// `SystemTime` cannot reach that far, the end of the year 9999.
fn latest_time() -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(i64::MAX.unsigned_abs()))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(253_402_300_799))
}

/// Milliseconds since the Unix epoch, as the stores keep times.
pub(crate) fn to_millis(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn from_millis(millis: i64) -> SystemTime {
    let distance = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        saturating_add(UNIX_EPOCH, distance)
    } else {
        UNIX_EPOCH.checked_sub(distance).unwrap_or(UNIX_EPOCH)
    }
}

/// When a job is next due, over its row in SQL: its lease's end while it runs, else its
/// `run_at`. Both SQL stores index this expression and claim in its order, so that a claim reads
/// only due jobs, however many wait.
macro_rules! due_at {
    () => {
        "CASE state WHEN 'running' THEN lease_until ELSE run_at END"
    };
}
pub(crate) use due_at;

/// The most body bytes the jobs that follow in one run hold together ([`ClaimRequest::run`]):
/// a worker holds at most its concurrency times this beyond one body a slot.
pub const MAX_RUN_BYTES: usize = 1 << 20;

/// How many due jobs a SQL store's claim reads beyond those it claims, at most. Those found
/// waiting behind an earlier job of their chat are marked so, once each, and leave the claim's
/// index: a backlog marked over a few claims, each of bounded cost.
pub(crate) const MAX_MARKED_PER_CLAIM: i64 = 128;

/// Says, at ERROR, that a job became a dead letter: its event name, id and attempts, never its
/// content, key or error (they can hold phone numbers).
pub(crate) fn log_dead_letter(_event: &str, _job: JobId, _attempts: u32) {
    #[cfg(feature = "tracing")]
    tracing::error!(
        event = _event,
        job = _job,
        attempts = _attempts,
        "periskope inbox job became a dead letter"
    );
}

/// The error recorded on a job whose last attempt never settled.
pub(crate) const LEASE_EXPIRED: &str = "the last attempt's lease expired (the worker stopped or hung)";

/// The longest error text kept for a job.
pub(crate) const MAX_ERROR_LEN: usize = 2000;

/// A [`Selection`] as the stores' query parameters: a job id, or a state name.
pub(crate) fn selection_params(selection: Selection) -> (Option<JobId>, Option<&'static str>) {
    match selection {
        Selection::Job(id) => (Some(id), None),
        Selection::State(state) => (None, Some(state.as_str())),
    }
}

/// Keeps at most `limit` characters of an error text, so one runaway message cannot bloat a row.
pub(crate) fn bounded_error(mut error: String, limit: usize) -> String {
    if error.len() > limit {
        let mut end = limit;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push('…');
    }
    error
}
